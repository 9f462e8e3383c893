"""Integration tests: a failed test that ran services shows the end of their output; a
local Telegram Bot API for the tests that send alerts."""

import pytest

from tests.fake_telegram import FakeTelegram
from tests.integration.pipeline import Pipeline


@pytest.fixture
def telegram():
    fake = FakeTelegram()
    yield fake
    fake.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, Pipeline):
                report.sections.append(("services' output", value.log_tails()))
    return report
