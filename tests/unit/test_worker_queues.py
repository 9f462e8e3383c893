"""Every command that starts a worker listens on every queue the app routes a task to:
the local stack's supervisord, Compose, and the test pipeline."""

import pytest
import yaml

from config import PROJECT_ROOT
from db.broker import QUEUES
from tests.integration.pipeline import worker_command
from tests.unit.test_two_ways import supervisord_command


def routed_queues() -> set[str]:
    """The queue of every task the app knows and of every task beat sends."""
    from tasks.celery_app import app

    app.loader.import_default_modules()
    names = {name for name in app.tasks if not name.startswith("celery.")}
    names |= {entry["task"] for entry in app.conf.beat_schedule.values()}
    return {app.amqp.router.route({}, name)["queue"].name for name in names}


def listened(command: list[str]) -> set[str]:
    assert "worker" in command, command
    queues = command[command.index("--queues") + 1]
    return set(queues.split(","))


def supervisord_worker() -> list[str]:
    return supervisord_command("worker")


def compose_worker() -> list[str]:
    spec = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    return spec["services"]["worker"]["command"]


def test_the_app_routes_to_exactly_the_declared_queues():
    assert routed_queues() == set(QUEUES)


@pytest.mark.parametrize(
    "command",
    [supervisord_worker, compose_worker, lambda: worker_command("worker@%h")],
    ids=["supervisord", "compose", "test pipeline"],
)
def test_every_worker_command_listens_on_every_routed_queue(command):
    assert listened(command()) >= routed_queues()
