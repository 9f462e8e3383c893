"""docker-compose.yml: valid against the Compose Specification, and its references resolve."""

import configparser
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from config import PROJECT_ROOT

COMPOSE = PROJECT_ROOT / "docker-compose.yml"


def test_compose_file_matches_the_compose_specification():
    checker = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_references_resolve():
    spec = yaml.safe_load(COMPOSE.read_text())
    services = spec["services"]
    volumes = set(spec.get("volumes", {}))
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown service {dependency}"
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            if source.startswith("."):
                assert (PROJECT_ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in volumes, f"{name} uses undeclared volume {source}"


def test_every_python_service_writes_logs_to_the_logs_volume():
    spec = yaml.safe_load(COMPOSE.read_text())
    for name, service in spec["services"].items():
        # (kafka-jmx-agent, of the same image, only copies a file and writes no log.)
        if service.get("build") and name != "kafka-jmx-agent":
            assert "logs:/var/log/salesflow" in service["volumes"], name
            assert service["environment"]["LOG_DIR"] == "/var/log/salesflow", name


DOCKERFILES = [PROJECT_ROOT / "Dockerfile", *sorted(PROJECT_ROOT.glob("stack/images/*/Dockerfile"))]


@pytest.mark.parametrize(
    "dockerfile", DOCKERFILES, ids=[str(p.relative_to(PROJECT_ROOT)) for p in DOCKERFILES]
)
def test_every_dockerfile_passes_hadolint(dockerfile):
    """The project's image and the stand-ins for the official images."""
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_holds_every_package_and_file_the_services_read():
    copied = set()
    for line in (PROJECT_ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            copied |= {source.rstrip("/") for source in line.split()[1:-1]}
    packages = {p.parent.name for p in PROJECT_ROOT.glob("*/__init__.py")} - {"tests"}
    setup = configparser.ConfigParser()
    setup.read(PROJECT_ROOT / "setup.cfg")
    modules = {f"{name}.py" for name in setup["options"]["py_modules"].split()}
    read = set()  # files read at run time through PROJECT_ROOT / "..."
    for package in packages:
        for module in (PROJECT_ROOT / package).rglob("*.py"):
            read |= set(re.findall(r'PROJECT_ROOT / "([^"]+)"', module.read_text()))
    needed = packages | modules | read
    missing = [path for path in needed if not any(path.startswith(c) for c in copied)]
    assert not missing, f"the Dockerfile copies no {missing}"


def test_every_service_bounds_dockers_own_log():
    text = COMPOSE.read_text()
    spec = yaml.safe_load(text)
    for name, service in spec["services"].items():
        logging = service.get("logging")
        assert logging, f"{name} has no logging option: add `logging: *logging`"
        assert logging["driver"] == "json-file", name
        assert re.fullmatch(r"[1-9]\d*[kmg]", logging["options"]["max-size"]), name
        assert re.fullmatch(r"[1-9]\d*", logging["options"]["max-file"]), name
    # Written once, in the x-logging extension field, and referenced everywhere else.
    assert spec["x-logging"] == spec["services"]["postgres"]["logging"]
    assert text.count("driver: json-file") == 1


# --- safe by default -------------------------------------------------------------------
SECRETS = (
    "POSTGRES_PASSWORD",
    "POSTGRES_ADMIN_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
    "GRAFANA_DB_PASSWORD",
)
TARGETS = PROJECT_ROOT / "monitoring" / "prometheus" / "targets" / "compose.json"
DATASOURCES = PROJECT_ROOT / "monitoring" / "grafana" / "provisioning" / "datasources"


def services() -> dict[str, dict]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def published(service: dict) -> list[tuple[str, int]]:
    """(host address, container port) of each port published to the host; "" means every
    address of the host."""
    ports = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports.append((port.get("host_ip", ""), int(port["target"])))
            continue
        # ${VAR:-default} as Compose reads it when VAR is unset.
        parts = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(port)).split(":")
        host_ip = parts[0] if len(parts) == 3 else ""
        ports.append((host_ip, int(parts[-1].split("/")[0])))
    return ports


def command_of(service: dict) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else command


def test_only_the_apis_grafana_and_the_prometheus_ui_are_published():
    ports = {name: published(s) for name, s in services().items() if s.get("ports")}
    assert {name: [port for _, port in p] for name, p in ports.items()} == {
        "collector": [8001],
        "analytics": [8002],
        "notifications": [8003],
        "prometheus": [9090],
        "grafana": [3000],
    }
    assert ports["prometheus"] == [("127.0.0.1", 9090)], "Prometheus's UI: this machine only"


def test_no_service_with_the_lifecycle_api_publishes_a_port():
    for name, service in services().items():
        if any(part.startswith("--web.enable-lifecycle") for part in command_of(service)):
            assert not service.get("ports"), f"{name} publishes its lifecycle API"
    # The choice made: Prometheus's UI is published, so its lifecycle API is off.
    assert not any("lifecycle" in part for part in command_of(services()["prometheus"]))


def test_metrics_endpoints_are_reached_inside_the_network_only():
    compose = services()
    targets = [t for group in json.loads(TARGETS.read_text()) for t in group["targets"]]
    scraped = dict(target.split(":") for target in targets)
    for name in ("processor", "worker", "notifier"):
        service = compose[name]
        assert not service.get("ports"), f"{name}'s metrics are published"
        port = service["environment"][f"{name.upper()}_METRICS_PORT"]
        assert int(scraped[name]) == int(port), f"Prometheus scrapes {name} elsewhere"
        # Listening on every address of its container is what lets Prometheus reach it.
        assert service["environment"]["HTTP_BIND_HOST"] == "0.0.0.0", name


def test_no_secret_has_a_default():
    text = COMPOSE.read_text()
    for name in SECRETS:
        uses = re.findall(r"\$\{" + name + r"(\W[^}]*)?\}", text)
        assert uses, f"{name} is not used"
        assert all(use.startswith(":?") for use in uses), f"{name} has a default or may be empty"
    compose = services()
    admin = compose["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert admin.startswith("${GRAFANA_ADMIN_PASSWORD:?")
    # The example keys stay refused under Compose.
    assert "ALLOW_EXAMPLE_KEYS" not in text


def test_grafana_reads_postgres_as_the_read_only_role():
    sources = {}
    for path in DATASOURCES.glob("*.y*ml"):
        sources |= {s["uid"]: s for s in yaml.safe_load(path.read_text())["datasources"]}
    (postgres,) = [s for s in sources.values() if "postgres" in s["type"]]
    assert postgres["user"] == "$GRAFANA_DB_USER"
    assert postgres["secureJsonData"]["password"] == "$GRAFANA_DB_PASSWORD"
    compose = services()
    grafana, migrate = compose["grafana"]["environment"], compose["migrate"]["environment"]
    for name in ("GRAFANA_DB_USER", "GRAFANA_DB_PASSWORD"):
        # The role the migration creates is the one Grafana logs in with.
        assert grafana[name] == migrate[name], name
    assert not {"POSTGRES_USER", "POSTGRES_PASSWORD"} & set(grafana)
    assert compose["grafana"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
