"""Logging: JSON lines per service; the Kafka client's own level is a setting of its own;
the bot token never reaches a line; a service's file rotates safely with several writer
processes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from config import PROJECT_ROOT
from tests.fake_telegram import TOKEN
from tests.helpers import free_port, service_environment

SCRIPT = """
import logging
from logs import configure_logging
configure_logging("svc")
for name in ("kafka.consumer.fetcher", "kombu.transport", "urllib3.connectionpool", "salesflow"):
    for level in (logging.DEBUG, logging.INFO, logging.WARNING):
        logging.getLogger(name).log(level, "%s at %s", name, logging.getLevelName(level))
"""


def run(script: str, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = service_environment(PROJECT_ROOT / ".env.example", LOG_DIR=str(tmp_path), **env)
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        env=environment,
        cwd=PROJECT_ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )


def logged(tmp_path, **env: str) -> set[tuple[str, str]]:
    run(SCRIPT, tmp_path, **env)
    lines = (tmp_path / "svc.log").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert all(r["service"] == "svc" for r in records)
    return {(r["logger"], r["level"]) for r in records}


def test_the_kafka_client_speaks_at_warning_unless_asked(tmp_path):
    assert logged(tmp_path) == {
        ("kafka.consumer.fetcher", "WARNING"),
        ("kombu.transport", "WARNING"),
        ("urllib3.connectionpool", "WARNING"),
        ("salesflow", "INFO"),
        ("salesflow", "WARNING"),
    }


@pytest.mark.parametrize("level", ["DEBUG", "INFO"])
def test_the_kafka_client_level_is_its_own(tmp_path, level):
    kafka = {("kafka.consumer.fetcher", lvl) for lvl in ("DEBUG", "INFO", "WARNING")}
    if level == "INFO":
        kafka.discard(("kafka.consumer.fetcher", "DEBUG"))
    # The services' own level and the other clients' stay as they were.
    assert logged(tmp_path, KAFKA_LOG_LEVEL=level, LOG_LEVEL="WARNING") == kafka | {
        ("kombu.transport", "WARNING"),
        ("urllib3.connectionpool", "WARNING"),
        ("salesflow", "WARNING"),
    }


def test_urllib3_keeps_its_request_lines_to_itself_at_debug(tmp_path):
    # At DEBUG urllib3 prints every request line, URL and token included.
    levels = logged(tmp_path, LOG_LEVEL="DEBUG")
    assert ("salesflow", "DEBUG") in levels
    assert ("urllib3.connectionpool", "DEBUG") not in levels
    assert ("urllib3.connectionpool", "INFO") not in levels


# --- the bot token -------------------------------------------------------------------
LEAKS = """
import logging, sys
import requests, urllib3
from logs import configure_logging
configure_logging("svc")
token, port = sys.argv[1], sys.argv[2]
url = f"http://127.0.0.1:{port}/bot{token}/sendMessage"
log = logging.getLogger("salesflow")
log.info("posting to %s", url)
log.info("the url is " + url)
log.warning("as an extra", extra={"url": url, "nested": {"urls": [url]}, "bare": token})
try:
    requests.post(url, json={}, timeout=5)
except requests.RequestException as error:
    log.error("no answer", extra={"error": error})
    log.exception("no answer: %s", error)
    log.error("with the stack", stack_info=True, extra={"reason": str(error)})
# urllib3's own retry warning carries the URL.
try:
    urllib3.PoolManager().request("POST", url, retries=urllib3.Retry(1, backoff_factor=0))
except urllib3.exceptions.MaxRetryError:
    log.error("urllib3 gave up", exc_info=True)
"""


def test_the_bot_token_never_reaches_a_line(tmp_path):
    port = free_port()  # nothing listens there: the connection is refused
    env = {"LOG_LEVEL": "DEBUG", "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_CHAT_ID": "-100123"}
    result = run(LEAKS, tmp_path, TOKEN, str(port), **env)
    log = (tmp_path / "svc.log").read_text()
    secret = TOKEN.split(":", 1)[1]
    for output in (log, result.stdout, result.stderr):
        assert secret not in output
    # Each way in was there, and was redacted rather than dropped.
    records = [json.loads(line) for line in log.splitlines()]
    by_message = {r["message"]: r for r in records}
    url = f"http://127.0.0.1:{port}/bot<redacted>/sendMessage"
    assert by_message[f"posting to {url}"] and by_message[f"the url is {url}"]
    extra = by_message["as an extra"]
    assert (extra["url"], extra["nested"], extra["bare"]) == (url, {"urls": [url]}, "<redacted>")
    assert "bot<redacted>" in by_message["no answer"]["error"]
    failures = [r for r in records if r["message"].startswith("no answer: ")]
    assert len(failures) == 1 and "bot<redacted>" in failures[0]["exc_info"]
    assert "bot<redacted>" in by_message["with the stack"]["reason"]
    retry = [r for r in records if r["logger"] == "urllib3.connectionpool"]
    assert retry and all("bot<redacted>" in r["message"] for r in retry)
    assert "bot<redacted>" in by_message["urllib3 gave up"]["exc_info"]
    # The same lines went to stderr, redacted alike.
    assert result.stderr.count("bot<redacted>") == log.count("bot<redacted>")


# --- rotation --------------------------------------------------------------------------
WRITERS = """
import logging, os, sys
from logs import configure_logging
name, lines, children = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
configure_logging("svc")
writers = [name]
# Forked after the set-up, as Celery's pool is: the children share the parent's handler.
pids = []
for child in range(children):
    pid = os.fork()
    if pid == 0:
        writers = [f"{name}-{child}"]
        pids = None
        break
    pids.append(pid)
for i in range(lines):
    extra = {"writer": writers[0], "n": i, "pad": "x" * 150}
    logging.getLogger("salesflow").info("line", extra=extra)
if pids is None:
    logging.shutdown()
    os._exit(0)
for pid in pids:
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
"""


def write_concurrently(tmp_path: Path, lines: int, max_bytes: int, backups: int) -> list[str]:
    """Two independent processes (as gunicorn's workers are), each forking two more, all
    writing `lines` lines into svc.log at once; the names of the six writers."""
    env = service_environment(
        PROJECT_ROOT / ".env.example",
        LOG_DIR=str(tmp_path),
        LOG_MAX_BYTES=str(max_bytes),
        LOG_BACKUP_COUNT=str(backups),
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WRITERS, name, str(lines), "2"],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name in ("a", "b")
    ]
    assert [p.wait(timeout=240) for p in processes] == [0, 0]
    return [w for name in ("a", "b") for w in (name, f"{name}-0", f"{name}-1")]


def files_oldest_first(tmp_path: Path) -> list[Path]:
    backups = sorted(tmp_path.glob("svc.log.*"), key=lambda p: int(p.suffix[1:]), reverse=True)
    return [*backups, tmp_path / "svc.log"]


def records_of(files: list[Path]) -> list[dict]:
    # json.loads fails on any line that was split or interleaved with another.
    return [json.loads(line) for path in files for line in path.read_text().splitlines()]


def assert_well_rotated(files: list[Path], max_bytes: int) -> None:
    # Rotated when full, not before (processes that each rotate on their own leave small
    # files), and over the limit by at most one line.
    for backup in files[:-1]:
        assert max_bytes <= backup.stat().st_size < max_bytes + 1000, backup


def test_rotation_with_several_writers_loses_no_line(tmp_path):
    max_bytes, lines = 20_000, 300
    writers = write_concurrently(tmp_path, lines, max_bytes, backups=100)
    files = files_oldest_first(tmp_path)
    assert [p.name for p in files[:-1]] == [f"svc.log.{i}" for i in range(len(files) - 1, 0, -1)]
    assert len(files) > 10  # it did rotate, many times
    assert not list(tmp_path.glob("svc.log.rotate*"))  # no rotation left half done
    assert_well_rotated(files, max_bytes)
    records = records_of(files)
    for writer in writers:
        # Every line once, in order, across the files read oldest first.
        assert [r["n"] for r in records if r["writer"] == writer] == list(range(lines))


def test_rotation_keeps_the_configured_number_of_files(tmp_path):
    max_bytes, lines, backups = 20_000, 600, 3
    writers = write_concurrently(tmp_path, lines, max_bytes, backups)
    files = files_oldest_first(tmp_path)
    assert [p.name for p in files] == ["svc.log.3", "svc.log.2", "svc.log.1", "svc.log"]
    assert_well_rotated(files, max_bytes)
    records = records_of(files)
    assert sum(p.stat().st_size for p in files) >= backups * max_bytes
    assert {r["writer"] for r in records} <= set(writers) and records
    for writer in writers:
        # Only whole old files go: what is left of each writer is its newest lines, with
        # nothing missing in between (a writer that finished early may have none left).
        kept = [r["n"] for r in records if r["writer"] == writer]
        assert kept == list(range(lines - len(kept), lines)), writer
