"""The Prometheus configuration and rules are valid, and every metric an alert reads is one
that a running service of the stack exposes."""

import re
import shutil
import subprocess

import requests
import yaml

from config import PROJECT_ROOT

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


def test_every_alert_reads_a_metric_the_services_expose(settings):
    exposed = set()
    for port in (
        settings.collector_port,
        settings.processor_metrics_port,
        settings.worker_metrics_port,
        settings.notifier_metrics_port,
    ):
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        exposed |= set(re.findall(r"^# TYPE (\w+)", text, re.M))
        exposed |= {f"{name}_total" for name in re.findall(r"^# TYPE (\w+) counter", text, re.M)}
    for path in sorted((PROMETHEUS / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                names = set(re.findall(r"\b([a-z_]+_(?:total|chunks|seconds))\b", rule["expr"]))
                assert names <= exposed | {"up"}, (rule["alert"], names - exposed)
