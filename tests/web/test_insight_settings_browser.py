"""Console → Insight → Settings in a real browser (Debian's Chromium, Playwright) against a live server: an
admin opens the settings, saves a bad value (the error names its line, nothing is saved), fixes it and saves
a new version; a form opened before a colleague's save is refused with a clear message.
One test on purpose: browser tests are slow, and the server-side tests cover every branch."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from memberops.accounts.models import Workspace
from memberops.audit.service import Actor
from memberops.insight import config_store
from memberops.runtime import Context
from tests.browser import ADMIN_EMAIL, Page, expect, new_console, serving, sign_in

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory,
           console_database_url: str) -> Iterator[tuple[str, Context, Workspace]]:
    """A live console with an admin; yields (base URL, context, workspace)."""
    context, workspace = new_console(tmp_path_factory, "insight-e2e", console_database_url)
    with serving(context, "insight-e2e") as base_url:
        yield base_url, context, workspace


@pytest.fixture(scope="module")
def console_url(served: tuple[str, Context, Workspace]) -> str:
    return served[0]


def test_admin_edits_the_settings_and_a_stale_form_is_refused(
        page: Page, served: tuple[str, Context, Workspace]) -> None:
    _, context, workspace = served
    sign_in(page)

    page.get_by_test_id("nav-insight-settings").click()
    expect(page.get_by_test_id("settings-version")).to_have_text("0")
    expect(page.get_by_test_id("settings-rfm-window")).to_have_text("365")
    editor = page.get_by_test_id("settings-yaml")
    line = editor.input_value().splitlines().index("  window_days: 365") + 1
    editor.fill(editor.input_value().replace("  window_days: 365", "  window_days: 0", 1))
    page.get_by_test_id("settings-save").click()
    expect(page.get_by_test_id("settings-error-line")).to_have_text(f"line {line}")
    expect(page.get_by_test_id("settings-error")).to_contain_text("rfm.window_days")
    expect(page.get_by_test_id("settings-version")).to_have_text("0")  # nothing saved

    editor = page.get_by_test_id("settings-yaml")
    editor.fill(editor.input_value().replace("  window_days: 0", "  window_days: 730", 1))
    page.get_by_test_id("settings-save").click()
    expect(page.get_by_test_id("flash")).to_have_text("Saved: version 1 is in force.")
    expect(page.get_by_test_id("settings-rfm-window")).to_have_text("730")
    expect(page.get_by_test_id("settings-history-by")).to_have_text([ADMIN_EMAIL])

    with context.store.transaction() as session:  # a colleague saves version 2 while the form is open
        config_store.update(session, workspace.id, {"rfm": {"window_days": 90}}, actor=Actor.cli())
    editor = page.get_by_test_id("settings-yaml")
    editor.fill(editor.input_value().replace("new_days: 90", "new_days: 45"))
    page.get_by_test_id("settings-save").click()
    expect(page.get_by_test_id("settings-error")).to_contain_text(
        "you started from version 1, version 2 is now in force")
    expect(page.get_by_test_id("settings-version")).to_have_text("2")
    expect(page.get_by_test_id("settings-yaml")).to_contain_text("new_days: 45")  # the edit is kept
