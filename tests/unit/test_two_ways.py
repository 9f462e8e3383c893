"""One system, two ways to run it: the local stack's supervisord and docker-compose.yml
start the same services with the same commands, ask the same /ready for their health,
and Prometheus scrapes the same targets; every variable the Compose file reads is
documented in .env.example."""

import configparser
import json
import re
import shlex
import subprocess
import sys

import yaml

import health
from config import PROJECT_ROOT, Settings

COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
APP_IMAGE = SERVICES["collector"]["image"]


def supervisord() -> configparser.RawConfigParser:
    conf = configparser.RawConfigParser()
    conf.read(PROJECT_ROOT / "stack/supervisord.conf")
    return conf


def supervisord_command(program: str) -> list[str]:
    """The program's command as supervisord runs it, from the values stack/env.py exports."""
    exports = subprocess.run(
        [sys.executable, "stack/env.py"], cwd=PROJECT_ROOT, capture_output=True, text=True,
        check=True,
    ).stdout  # fmt: skip
    env = {}
    for line in exports.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[f"ENV_{name}"] = shlex.split(value)[0] if value else ""
    env["ENV_VENV_ABS"] = str(PROJECT_ROOT / ".venv")
    return shlex.split(supervisord().get(f"program:{program}", "command") % env)


def local_services() -> set[str]:
    return set(supervisord().get("group:services", "programs").split(","))


# Containers of the project's image that run once and exit: the migrations, and the copy
# of the JMX agent's jar into the volume the broker's container loads it from.
ONE_SHOTS = {"migrate", "kafka-jmx-agent"}
# Official images with nothing to run a check with (no shell, no HTTP client): their
# health is their Prometheus target's `up`, and nothing waits for them.
NO_HEALTHCHECK = {"process-exporter"}


def compose_services() -> set[str]:
    """The long-running services of the project's image (not the one-shots)."""
    return {
        name
        for name, spec in SERVICES.items()
        if spec.get("image") == APP_IMAGE and spec.get("restart") != "no"
    }


def comparable(command: list[str]) -> list[str]:
    """The command without what only says where things are: the virtualenv's bin folder,
    and the path of beat's schedule file (a scratch file of each way)."""
    command = [command[0].rsplit("/", 1)[-1], *command[1:]]
    if "--schedule" in command:
        command[command.index("--schedule") + 1] = "<schedule file>"
    return command


def test_the_same_services_run_both_ways():
    assert local_services() == compose_services()
    servers = set(supervisord().get("group:servers", "programs").split(","))
    # Grafana runs under Compose only (it cannot be installed on the local stack's machines).
    assert servers | {"grafana"} == set(SERVICES) - compose_services() - ONE_SHOTS


def test_each_service_runs_the_same_command_both_ways():
    for service in local_services():
        local = comparable(supervisord_command(service))
        assert local == comparable(SERVICES[service]["command"]), service


def test_each_service_is_checked_by_the_same_readiness_both_ways():
    """Compose's healthcheck probes the port that `make status` asks (health.ports()), and
    that port is the service's own setting, at its default, in the container."""
    defaults = {name.upper(): field.default for name, field in Settings.model_fields.items()}
    ports = health.ports()
    assert set(ports) == local_services()
    for service in local_services():
        spec = SERVICES[service]
        test = spec["healthcheck"]["test"]
        assert test[:4] == ["CMD", "python", "-m", "health"], (service, test)
        assert test[4:] == ["probe", str(ports[service])], (service, test)
        port_settings = [k for k in spec["environment"] if k.endswith("_PORT")]
        assert [spec["environment"][k] for k in port_settings] == [ports[service]], service
        assert [defaults[k] for k in port_settings] == [ports[service]], service


def test_every_long_running_container_has_a_healthcheck_and_a_restart_policy():
    for name, spec in SERVICES.items():
        if name in ONE_SHOTS:
            assert spec["restart"] == "no", name
            continue
        assert spec["restart"] == "unless-stopped", name
        if name in NO_HEALTHCHECK:
            assert "healthcheck" not in spec and not any(
                name in other.get("depends_on", {}) for other in SERVICES.values()
            ), name
            continue
        assert spec.get("healthcheck", {}).get("test"), name
        for dependency, condition in spec.get("depends_on", {}).items():
            expected = (
                "service_completed_successfully" if dependency in ONE_SHOTS else "service_healthy"
            )
            assert condition["condition"] == expected, (name, dependency)


def test_prometheus_scrapes_the_same_services_both_ways():
    folder = PROJECT_ROOT / "monitoring/prometheus"
    compose = {
        t["labels"]["service"]: t["targets"]
        for t in json.loads((folder / "targets/compose.json").read_text())
    }
    local = {
        t["labels"]["service"]: t["targets"]
        for t in json.loads((folder / "targets-local.json.in").read_text())
    }
    servers = {"prometheus", "alertmanager", "postgres", "kafka", "processes"}
    assert set(compose) == set(local) == local_services() | servers
    ports = health.ports() | {
        "prometheus": 9090,
        "alertmanager": 9093,
        "postgres": 9187,
        "kafka": 9105,
        "processes": 9256,
    }
    # PostgreSQL's figures come from its exporter, a container of its own.
    hosts = {"postgres": "postgres-exporter", "processes": "process-exporter"}
    for service, (target,) in compose.items():
        assert target == f"{hosts.get(service, service)}:{ports[service]}", service
    # Locally each target is the setting of the same port, rendered by `make up`.
    names = {
        "prometheus": "PROMETHEUS_PORT",
        "collector": "COLLECTOR_PORT",
        "analytics": "ANALYTICS_PORT",
        "notifications": "NOTIFICATIONS_PORT",
        "alertmanager": "ALERTMANAGER_PORT",
        "postgres": "POSTGRES_EXPORTER_PORT",
        "processes": "PROCESS_EXPORTER_PORT",
    }
    for service, (target,) in local.items():
        setting = names.get(service, f"{service.upper()}_METRICS_PORT")
        assert target == f"127.0.0.1:${{{setting}}}", service


def test_every_variable_the_compose_file_reads_is_documented_in_env_example():
    example = (PROJECT_ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^(?:# )?([A-Z][A-Z0-9_]*)=", example, re.M))
    read = set(
        re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (PROJECT_ROOT / "docker-compose.yml").read_text())
    )
    assert read, "the Compose file reads no variable?"
    assert read <= documented, read - documented


def test_the_services_environment_in_compose_names_only_settings():
    settings = {name.upper() for name in Settings.model_fields}
    for service in compose_services() | {"migrate"}:
        assert set(SERVICES[service]["environment"]) <= settings, service


def test_the_broker_loads_the_same_jmx_agent_and_rules_both_ways():
    """The agent's version is the local stack's (stack/lib.sh) in the image, and both
    brokers load it with monitoring/kafka/jmx-exporter.yml on the metrics port."""
    version = re.search(
        r"^JMX_AGENT_VERSION=(\S+)$", (PROJECT_ROOT / "stack/lib.sh").read_text(), re.M
    )
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert version and f"ARG JMX_AGENT_VERSION={version.group(1)}\n" in dockerfile
    local = supervisord().get("program:kafka", "command")
    assert "-javaagent:%(ENV_STACK_LOCAL)s/kafka/agent/jmx_prometheus_javaagent.jar=" in local
    assert (
        local.split("-javaagent:")[1]
        .split()[0]
        .endswith(
            ":%(ENV_KAFKA_METRICS_PORT)s:%(ENV_STACK_ROOT)s/monitoring/kafka/jmx-exporter.yml"
        )
    )
    kafka = SERVICES["kafka"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in kafka["volumes"]}
    agent, _, rules = kafka["environment"]["KAFKA_OPTS"].removeprefix("-javaagent:").partition("=")
    assert mounts[agent.rsplit("/", 1)[0]] == "jmx-agent"
    assert (
        rules
        == f"{Settings.model_fields['kafka_metrics_port'].default}:/etc/jmx-exporter/kafka.yml"
    )
    assert mounts["/etc/jmx-exporter/kafka.yml"] == "./monitoring/kafka/jmx-exporter.yml"
    copy = SERVICES["kafka-jmx-agent"]
    assert copy["command"][1] == agent and copy["volumes"] == ["jmx-agent:/var/lib/jmx-agent"]
    assert kafka["depends_on"]["kafka-jmx-agent"]["condition"] == "service_completed_successfully"
