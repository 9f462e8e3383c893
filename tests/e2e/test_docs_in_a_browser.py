"""A person posts a transaction from the Swagger UI at /docs of the running Data Collector
(the one `make up` started), in headless Chromium, and the row appears in the database."""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import UTC, datetime

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import create_engine, text

from tests.helpers import example_settings, wait_until

KEY = example_settings().ingest_api_keys[0]


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,2000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    # The driver from Debian's package: nothing is downloaded.
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    yield driver
    driver.quit()


def test_a_transaction_posted_from_swagger_ui_is_stored(settings, browser, tmp_path):
    base = f"http://127.0.0.1:{settings.collector_port}"
    sku = f"browser-sku-{uuid.uuid4().hex[:8]}"
    product = {"product_id": sku, "name": "Browser cup", "category": "Kitchen", "price": "4.20"}
    answer = requests.post(
        f"{base}/api/v1/products", json=product, headers={"X-API-Key": KEY}, timeout=10
    )
    assert answer.status_code == 202

    wait = WebDriverWait(browser, 30)
    browser.get(f"{base}/docs")
    # Authorize with the ingestion key.
    wait.until(ready.element_to_be_clickable((By.CSS_SELECTOR, "button.authorize"))).click()
    section = wait.until(
        ready.presence_of_element_located(
            (By.XPATH, "//div[contains(@class,'auth-container')][.//h4[contains(., 'ApiKeyAuth')]]")
        )
    )
    section.find_element(By.CSS_SELECTOR, "input").send_keys(KEY)
    section.find_element(By.CSS_SELECTOR, "button.authorize").click()
    browser.find_element(By.CSS_SELECTOR, "button.btn-done").click()

    # Open POST /api/v1/transactions, try it out with our own body, execute.
    operation = wait.until(
        ready.presence_of_element_located(
            (
                By.XPATH,
                "//div[contains(@class,'opblock-post')][.//*[@data-path='/api/v1/transactions']]",
            )
        )
    )
    operation.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    try_it = wait.until(lambda _: operation.find_element(By.CSS_SELECTOR, "button.try-out__btn"))
    if try_it.text.strip() == "Try it out":  # /docs opens operations ready to try already
        try_it.click()
    transaction_id = f"browser-{uuid.uuid4().hex[:12]}"
    body = {
        "transaction_id": transaction_id,
        "product_id": sku,
        "quantity": 2,
        "timestamp": datetime.now(UTC).replace(microsecond=0).isoformat(),
    }
    editor = wait.until(
        lambda _: operation.find_element(By.CSS_SELECTOR, "textarea.body-param__text")
    )
    editor.clear()
    editor.send_keys(json.dumps(body))
    operation.find_element(By.CSS_SELECTOR, "button.execute").click()
    status = wait.until(
        lambda _: operation.find_element(
            By.CSS_SELECTOR, ".live-responses-table tbody .response-col_status"
        )
    )
    browser.save_screenshot(str(tmp_path / "docs.png"))
    assert status.text.strip().startswith("202"), status.text

    engine = create_engine(settings.database_url)
    try:

        def stored():
            with engine.connect() as conn:
                return conn.execute(
                    text("SELECT total_amount FROM transactions WHERE transaction_id = :id"),
                    {"id": transaction_id},
                ).scalar()

        assert str(wait_until(stored, timeout=30, what="the row")) == "8.40"
    finally:
        engine.dispose()


def test_every_report_can_be_read_from_swagger_ui(settings, browser, tmp_path):
    """Each GET of the running Analytics API, executed from /docs with its defaults, answers
    200 with the figures of the demo data."""
    base = f"http://127.0.0.1:{settings.analytics_port}"
    wait = WebDriverWait(browser, 30)
    browser.get(f"{base}/docs")
    wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, ".opblock-get")))
    paths = [
        block.find_element(By.CSS_SELECTOR, "[data-path]").get_attribute("data-path")
        for block in browser.find_elements(By.CSS_SELECTOR, ".opblock-get")
    ]
    reports = [path for path in paths if path.startswith("/api/v1/") and "{" not in path]
    assert {"/api/v1/analytics/summary", "/api/v1/reports/daily"} <= set(reports), paths
    for path in reports:
        operation = browser.find_element(
            By.XPATH, f"//div[contains(@class,'opblock-get')][.//*[@data-path='{path}']]"
        )
        browser.execute_script("arguments[0].scrollIntoView();", operation)
        operation.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
        try_it = wait.until(
            lambda _, op=operation: op.find_element(By.CSS_SELECTOR, "button.try-out__btn")
        )
        if try_it.text.strip() == "Try it out":
            try_it.click()
        operation.find_element(By.CSS_SELECTOR, "button.execute").click()
        status = wait.until(
            lambda _, op=operation: op.find_element(
                By.CSS_SELECTOR, ".live-responses-table tbody .response-col_status"
            )
        )
        body = operation.find_element(By.CSS_SELECTOR, ".live-responses-table tbody pre").text
        assert status.text.strip().startswith("200"), (path, status.text, body)
        assert json.loads(body), path
    browser.save_screenshot(str(tmp_path / "analytics-docs.png"))
