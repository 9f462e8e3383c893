"""Which URLs an alert rule's webhook may call: the API refuses a rule naming another,
and the notifier checks again before each post (the setting may have changed since)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def host_allowed(host: str, allowed: list[str]) -> bool:
    """Exact names or addresses, and `*.example.com` for every host below example.com."""
    host = host.lower().rstrip(".")
    for entry in allowed:
        entry = entry.lower().rstrip(".")
        if entry.startswith("*.") and host.endswith(entry[1:]):
            return True
        if host == entry:
            return True
    return False


def check_url(url: str, allowed: list[str]) -> None:
    """Raises ValueError, saying what to do, unless `url` is an absolute http(s) URL
    without credentials whose host NOTIFY_WEBHOOK_ALLOWED_HOSTS allows."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a port that is no number)
    except ValueError as error:
        raise ValueError(f"not a URL ({error}); give an absolute http(s) URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an absolute http(s) URL, such as https://ops.example.com/hook")
    if parts.username or parts.password:
        raise ValueError("credentials do not belong in the URL; use the channel's secret")
    host = parts.hostname
    if not host_allowed(host, allowed):
        shown = f"[{host}]" if _is_ipv6(host) else host
        raise ValueError(
            f"the host {shown} is not allowed; add it to NOTIFY_WEBHOOK_ALLOWED_HOSTS"
            f" (now: {', '.join(allowed) or 'none'})"
        )


def _is_ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False
