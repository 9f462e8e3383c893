"""The Prometheus configuration and rules are valid, and every series an alert reads is in
the running stack's Prometheus."""

import re
import shutil
import subprocess

import yaml

from config import PROJECT_ROOT
from tests.helpers import prometheus_query, wait_until

PROMETHEUS = PROJECT_ROOT / "monitoring" / "prometheus"


def promtool(*args: str) -> None:
    result = subprocess.run(
        [shutil.which("promtool"), *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_config_and_rules_pass_promtool():
    promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    promtool("check", "rules", *map(str, sorted((PROMETHEUS / "rules").glob("*.yml"))))


def test_alert_rules_pass_their_unit_tests():
    """Rules with a behaviour worth pinning down have promtool unit tests (input series,
    expected alerts) in monitoring/prometheus/tests/."""
    tests = sorted((PROMETHEUS / "tests").glob("*.yml"))
    assert tests
    promtool("test", "rules", *map(str, tests))


COMPARISON = re.compile(r"\s(?:>=|<=|==|!=|>|<)\s")


def test_every_alert_rule_reads_series_the_running_stack_has(settings):
    """Each side of every rule's comparison (its measure and, where it is one, its
    threshold: a setting a service exports) returns series from the stack's Prometheus,
    so no rule waits on a metric nobody exports or a label nobody sets."""
    base = f"http://127.0.0.1:{settings.prometheus_port}"
    sides = []
    for path in sorted((PROMETHEUS / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                parts = COMPARISON.split(" ".join(rule["expr"].split()))
                assert len(parts) == 2, (rule["alert"], rule["expr"])
                sides += [
                    (rule["alert"], part) for part in parts if not re.fullmatch(r"[\d.]+", part)
                ]
    assert len(sides) >= 10

    for alert, expr in sides:
        wait_until(
            lambda e=expr: prometheus_query(base, e),
            timeout=60,
            interval=3,
            what=f"{alert}: {expr}",
        )
