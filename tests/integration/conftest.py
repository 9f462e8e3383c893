"""Integration tests: a failed test that ran services shows the end of their output."""

import pytest

from tests.integration.pipeline import Pipeline


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, Pipeline):
                report.sections.append(("services' output", value.log_tails()))
    return report
