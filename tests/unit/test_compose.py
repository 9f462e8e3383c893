"""docker-compose.yml: valid against the Compose Specification, and its references resolve."""

import re
import subprocess
import sys
from pathlib import Path

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
        if service.get("build"):
            assert "logs:/var/log/salesflow" in service["volumes"], name
            assert service["environment"]["LOG_DIR"] == "/var/log/salesflow", name


def test_dockerfile_passes_hadolint():
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "--no-color", str(PROJECT_ROOT / "Dockerfile")],
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
    read = set()  # files read at run time through PROJECT_ROOT / "..."
    for package in packages:
        for module in (PROJECT_ROOT / package).rglob("*.py"):
            read |= set(re.findall(r'PROJECT_ROOT / "([^"]+)"', module.read_text()))
    missing = [path for path in packages | read if not any(path.startswith(c) for c in copied)]
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
