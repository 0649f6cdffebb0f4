"""Console → Insight → Settings through the real app, on every store: every role reads the settings in
force; admins edit them as YAML (a new audited version), errors name their line and save nothing, an edit
of an older version is refused (409) with a clear message, a double submit makes one version."""

from __future__ import annotations

from fastapi.testclient import TestClient

from memberops.accounts.models import Workspace
from memberops.audit import service as audit
from memberops.audit.service import Actor
from memberops.insight import config_store
from memberops.runtime import Context
from tests.console import csrf_in, form_value, signed_in, texts_by_testid

SETTINGS = """rfm:
  window_days: 730
lifecycle:
  new_days: 60
  at_risk_days: 120
  churned_days: 400
uncounted_statuses: [created, cancelled, returned]
"""


def version_in_force(context: Context, workspace: Workspace) -> int:
    with context.store.read() as session:
        return config_store.current_version(session, workspace.id)[1]


class TestSettingsPage:
    def test_every_role_reads_it_only_admins_get_the_form(self, console: TestClient, context: Context,
                                                           workspace: Workspace) -> None:
        page = signed_in(console, context, workspace, "analyst").get("/insight/settings")

        assert page.status_code == 200
        assert texts_by_testid(page.text, "settings-version") == ["0"]
        assert texts_by_testid(page.text, "settings-rfm-window") == ["365"]
        assert len(texts_by_testid(page.text, "settings-rfm-row", "tr")) == 5
        assert 'data-testid="settings-form"' not in page.text
        assert "window_days: 365" in page.text  # the YAML, read-only
        assert 'data-testid="nav-insight-settings"' in page.text
        assert texts_by_testid(page.text, "settings-history-empty", "td") == ["Never changed: the defaults are in force."]

    def test_admin_saves_a_new_audited_version(self, console: TestClient, context: Context,
                                               workspace: Workspace) -> None:
        client = signed_in(console, context, workspace, "admin")
        page = client.get("/insight/settings")
        assert form_value(page.text, "based_on") == "0"

        response = client.post("/insight/settings", follow_redirects=False, data={
            "csrf_token": csrf_in(page.text), "based_on": "0", "settings": SETTINGS})

        assert response.status_code == 303 and response.headers["location"] == "/insight/settings?saved=1"
        shown = client.get(response.headers["location"]).text
        assert texts_by_testid(shown, "settings-version") == ["1"]
        assert texts_by_testid(shown, "settings-rfm-window") == ["730"]
        assert texts_by_testid(shown, "settings-uncounted") == ["created, cancelled, returned"]
        assert texts_by_testid(shown, "settings-history-by") == ["admin@example.com"]
        with context.store.read() as session:
            settings = config_store.current(session, workspace.id)
            entries = [e for e in audit.recent(session, workspace.id, 20) if e.action == "insight.config.update"]
        assert settings.lifecycle.new_days == 60 and settings.value == config_store.DEFAULT.value
        assert [e.actor_type for e in entries] == ["user"]
        assert "rfm.window_days" in entries[0].detail["changed"]

    def test_errors_are_shown_by_line_and_nothing_is_saved(self, console: TestClient, context: Context,
                                                           workspace: Workspace) -> None:
        client = signed_in(console, context, workspace, "admin")
        page = client.get("/insight/settings")
        text = "rfm:\n  window_days: 0\nlifecycle:\n  new_days: 30\ncolour: red\n"

        response = client.post("/insight/settings", data={
            "csrf_token": csrf_in(page.text), "based_on": "0", "settings": text})

        assert response.status_code == 422
        errors = texts_by_testid(response.text, "settings-error", "li")
        assert any(e.startswith("line 2 · rfm.window_days:") for e in errors), errors
        assert any(e.startswith("line 5 · colour:") for e in errors), errors
        assert "colour: red" in response.text  # the text as sent is kept for fixing
        not_yaml = client.post("/insight/settings", data={
            "csrf_token": csrf_in(page.text), "based_on": "0", "settings": "rfm: [\n  x: 1\n"})
        assert not_yaml.status_code == 422 and texts_by_testid(not_yaml.text, "settings-error-line") == ["line 3"]
        assert version_in_force(context, workspace) == 0

    def test_an_edit_of_an_older_version_is_refused(self, console: TestClient, context: Context,
                                                    workspace: Workspace) -> None:
        client = signed_in(console, context, workspace, "admin")
        page = client.get("/insight/settings")
        with context.store.transaction() as session:  # a colleague saves version 1 meanwhile
            config_store.update(session, workspace.id, {"rfm": {"window_days": 90}}, actor=Actor.cli())

        response = client.post("/insight/settings", data={
            "csrf_token": csrf_in(page.text), "based_on": form_value(page.text, "based_on"), "settings": SETTINGS})

        assert response.status_code == 409
        assert texts_by_testid(response.text, "settings-error", "li") == [
            "the insight settings were changed by someone else while you edited them: you started from version 0, "
            "version 1 is now in force; reload them and make your change again"]
        assert "uncounted_statuses: [created, cancelled, returned]" in response.text  # the edit is not lost
        assert version_in_force(context, workspace) == 1

    def test_a_double_submit_makes_one_version(self, console: TestClient, context: Context,
                                               workspace: Workspace) -> None:
        client = signed_in(console, context, workspace, "admin")
        page = client.get("/insight/settings")
        form = {"csrf_token": csrf_in(page.text), "based_on": "0", "settings": SETTINGS}

        first = client.post("/insight/settings", data=form, follow_redirects=False)
        second = client.post("/insight/settings", data=form, follow_redirects=False)

        assert first.status_code == second.status_code == 303
        assert version_in_force(context, workspace) == 1
        assert len(texts_by_testid(client.get("/insight/settings").text, "settings-history-row", "tr")) == 1

    def test_non_admin_post_is_403_and_a_missing_token_too(self, console: TestClient, context: Context,
                                                           workspace: Workspace) -> None:
        client = signed_in(console, context, workspace, "marketer")
        page = client.get("/insight/settings")

        as_marketer = client.post("/insight/settings", data={"csrf_token": csrf_in(page.text), "settings": SETTINGS})
        client.post("/logout", data={"csrf_token": csrf_in(page.text)})
        signed_in(console, context, workspace, "admin")
        without_token = client.post("/insight/settings", data={"settings": SETTINGS})

        assert as_marketer.status_code == 403 and without_token.status_code == 403
        assert version_in_force(context, workspace) == 0
