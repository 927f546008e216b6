import os

import pytest

from config.ratelimit import reset_rate_limits
from tests.dashboard.support.browser import launch_chromium


@pytest.fixture(autouse=True)
def _fresh_login_limits(db):
    """Sign-in and dashboard session counters live in Redis or the database and would otherwise leak
    between tests (reset_rate_limits clears this test database's namespace only, not another worker's)."""
    reset_rate_limits()
    yield
    reset_rate_limits()


@pytest.fixture(scope="module")
def browser():
    # Playwright's sync API runs an asyncio loop in this thread; Django refuses ORM calls from a thread
    # with a running loop unless told that it is safe (it is: the ORM is called synchronously here).
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def manual_engine(settings):
    """Steps wait in a queue this test drains (runs.engine.dispatch's manual mode), so a run's progress is
    under the test's control."""
    from runs.engine import dispatch

    settings.BATON_ENGINE_DISPATCH = "manual"
    for queue in (dispatch.MANUAL_QUEUE, dispatch.MANUAL_ADMISSIONS, dispatch.MANUAL_CALLBACKS):
        queue.clear()
    yield dispatch
    for queue in (dispatch.MANUAL_QUEUE, dispatch.MANUAL_ADMISSIONS, dispatch.MANUAL_CALLBACKS):
        queue.clear()
