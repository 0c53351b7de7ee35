"""The Swagger UI in a real headless Chromium, against real Gunicorn: authorize, try POST /v1/predict, offline."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Route, expect, sync_playwright

from mlapi.extensions import db
from tests.conftest import make_test_app
from tests.factories import Factory
from tests.gunicorn_server import GunicornServer
from tests.services import unavailable

pytestmark = pytest.mark.integration

LOCAL_HOSTS = {"127.0.0.1", "localhost"}
# Debian's chromium; `playwright install` would download a browser, which this project never does.
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # The browser's own traffic (outside any page) cannot be routed; make it unable to resolve a name.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
]
ACTION_TIMEOUT_MS = 10_000
# The first prediction of a fresh worker may take a moment longer than a click.
PREDICTION_TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    if chromium is None:
        unavailable("Chromium", FileNotFoundError("chromium is not installed (Debian package chromium)"))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class OfflineGuard:
    """Routes every request of a browser context: local ones go through, any other is aborted and recorded."""

    def __init__(self, context: BrowserContext) -> None:
        self.left_the_machine: list[str] = []
        context.route("**/*", self._route)

    def _route(self, route: Route) -> None:
        url = route.request.url
        if urlsplit(url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            self.left_the_machine.append(url)
            route.abort()


@pytest.fixture
def tab(browser: Browser, tmp_path: Path) -> Iterator[SimpleNamespace]:
    context = browser.new_context()
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    guard = OfflineGuard(context)
    page = context.new_page()
    console_errors: list[str] = []
    page.on("console", lambda message: _record_console_error(message, console_errors))
    page.on("pageerror", lambda error: console_errors.append(f"uncaught: {error}"))
    try:
        yield SimpleNamespace(page=page, guard=guard, console_errors=console_errors, tmp_path=tmp_path)
    finally:
        context.close()


def _record_console_error(message: ConsoleMessage, errors: list[str]) -> None:
    if message.type != "error":
        return
    # The docs page names no icon, so the browser asks for /favicon.ico and gets the API's 404 envelope.
    if message.location.get("url", "").endswith("/favicon.ico"):
        return
    errors.append(f"{message.text} ({message.location.get('url')})")


@contextmanager
def screenshot_on_failure(page: Page, path: Path) -> Iterator[None]:
    try:
        yield
    except BaseException as error:
        try:
            page.screenshot(path=path, full_page=True)
            error.add_note(f"screenshot of the page: {path}")
        except Exception as screenshot_error:  # noqa: BLE001 (the original failure matters more)
            error.add_note(f"no screenshot: {screenshot_error}")
        raise


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """One Gunicorn worker with the default model store, on a SQLite file that holds a pro account's key."""
    workdir = tmp_path_factory.mktemp("docs-browser")
    url = f"sqlite:///{workdir / 'mlapi.db'}"
    app = make_test_app(url, load_models=False)
    factory = Factory(app)
    record, key = factory.api_key(factory.user("swagger", tier="pro"), label="browser")
    db.dispose()
    with GunicornServer(workdir / "gunicorn.log", {"MLAPI_DATABASE_URL": url}, workers=1, threads=4) as gunicorn:
        yield SimpleNamespace(gunicorn=gunicorn, key=key, key_id=record.id)


def test_swagger_ui_authorizes_with_an_api_key_and_runs_a_prediction_offline(tab, server):
    browser_page: Page = tab.page
    with screenshot_on_failure(browser_page, tab.tmp_path / "docs-failure.png"):
        browser_page.goto(f"{server.gunicorn.url}/v1/docs")
        expect(browser_page.locator(".information-container .title")).to_contain_text("mlapi")

        browser_page.locator(".scheme-container button.authorize").click()
        dialog = browser_page.locator(".dialog-ux .modal-ux")
        api_key_form = dialog.locator(".auth-container").filter(has_text="apiKeyAuth")
        expect(api_key_form).to_contain_text("X-API-Key")
        api_key_form.locator("input").fill(server.key)
        api_key_form.get_by_role("button", name="Apply credentials").click()  # the "Authorize" button
        expect(api_key_form.get_by_role("heading", name="Authorized")).to_be_visible()
        api_key_form.get_by_role("button", name="Close").click()
        expect(dialog).to_be_hidden()

        operation = browser_page.locator(".opblock-post").filter(
            has=browser_page.locator('.opblock-summary-path[data-path="/v1/predict"]')
        )
        operation.locator(".opblock-summary").click()
        operation.get_by_role("button", name="Try it out").click()
        operation.locator("textarea.body-param__text").fill(
            '{"text": "I love this phone, the battery lasts for days."}'
        )
        operation.get_by_role("button", name="Execute").click()

        response = operation.locator(".live-responses-table .response")
        expect(response.locator(".response-col_status")).to_have_text("200", timeout=PREDICTION_TIMEOUT_MS)
        expect(response.locator(".response-col_description")).to_contain_text('"result"')
        expect(operation.locator(".curl-command")).to_contain_text("X-API-Key")

    predictions = [e for e in server.gunicorn.access_log() if e.get("path") == "/v1/predict"]
    assert [(e["method"], e["status"], e.get("api_key_id")) for e in predictions] == [("POST", 200, server.key_id)]
    assert tab.guard.left_the_machine == []
    assert tab.console_errors == []


def test_the_offline_guard_catches_a_request_that_would_leave_the_machine(tab):
    tab.page.set_content('<img src="https://cdn.example.com/logo.png">')
    tab.page.wait_for_load_state("load")
    assert tab.guard.left_the_machine == ["https://cdn.example.com/logo.png"]
