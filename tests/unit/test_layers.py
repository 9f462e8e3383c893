"""The packages import one way: bench on top; web, tasks and consumers (the processes)
beside each other; streams (Kafka) under them; db at the bottom with config, logs and health.
Read from the source with `ast`, so that a new import that breaks a rule fails here."""

import ast
import subprocess
import sys

import pytest

from config import PROJECT_ROOT

PROCESSES = {"web", "tasks", "consumers"}
# package: the project's packages it must never import
FORBIDDEN = {
    "config": {"db", "streams", "bench", "logs", "health"} | PROCESSES,
    "logs": {"db", "streams", "bench", "health"} | PROCESSES,
    "health": {"db", "streams", "bench", "logs"} | PROCESSES,
    "db": {"streams", "bench"} | PROCESSES,
    "migrations": {"streams", "bench"} | PROCESSES,
    "streams": {"bench"} | PROCESSES,
    "web": {"bench", "tasks", "consumers"},
    "tasks": {"bench", "web", "consumers"},
    "consumers": {"bench", "web", "tasks"},
}


def package_of(path) -> str:
    return path.relative_to(PROJECT_ROOT).parts[0].removesuffix(".py")


def imported(path) -> set[str]:
    """The top-level names of every module the file imports, at any depth in the file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def sources():
    for package in FORBIDDEN:
        target = PROJECT_ROOT / package
        yield from [target.with_suffix(".py")] if not target.is_dir() else target.rglob("*.py")


def test_every_package_imports_only_downwards():
    broken = [
        f"{path.relative_to(PROJECT_ROOT)} imports {name}"
        for path in sources()
        for name in sorted(imported(path) & FORBIDDEN[package_of(path)])
    ]
    assert broken == []


def test_the_rules_read_real_imports():
    """The reader sees imports inside functions too (the kind that once hid a cycle)."""
    assert "db" in imported(PROJECT_ROOT / "streams/replay.py")
    assert {"db", "streams"} <= imported(PROJECT_ROOT / "consumers/processor.py")


def loaded(module: str) -> set[str]:
    """The project's top-level packages, and Flask and Celery, that importing `module`
    loads in a fresh interpreter."""
    script = (
        f"import sys, {module};print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split()) & {"web", "tasks", "consumers", "bench", "flask", "celery"}


@pytest.mark.parametrize(
    ("module", "allowed"),
    [
        ("db.reports.queries", set()),
        ("db.reports.rollups", set()),
        ("streams.messages", set()),
        ("consumers.processor", {"consumers", "celery"}),  # sends by name: no worker code
        ("consumers.notifier", {"consumers"}),
    ],
)
def test_a_module_loads_only_what_its_layer_allows(module, allowed):
    assert loaded(module) <= allowed
