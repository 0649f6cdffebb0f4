"""Console Insight → Tags through the real app, on every store: list with rules and member counts, create,
edit and delete for admins and marketers (validated, errors by line, audited), read-only for analysts."""

from __future__ import annotations

from datetime import UTC, datetime
from html import unescape

from fastapi.testclient import TestClient

from memberops.accounts.models import Workspace
from memberops.audit import service as audit
from memberops.audit.service import Actor
from memberops.db.base import utcnow
from memberops.insight import tagging
from memberops.insight.models import InsightRun
from memberops.insight.tags import TagDefinition
from memberops.runtime import Context
from tests.console import csrf_in, signed_in, texts_by_testid

RULE = "all:\n  - trait: orders\n    op: gte\n    value: 2\n"


def put(context: Context, workspace: Workspace, name: str, rule: dict[str, object]) -> None:
    with context.store.transaction() as session:
        tagging.put_tag(session, workspace.id, TagDefinition.model_validate({"name": name, "rule": rule}),
                        actor=Actor.cli())


def current(context: Context, workspace: Workspace) -> dict[str, int]:
    with context.store.read() as session:
        return {definition.name: row.version for definition, row in tagging.list_tags(session, workspace.id)}


class TestTagsPage:
    def test_analyst_reads_rules_and_counts_but_cannot_write(self, console: TestClient, context: Context,
                                                             workspace: Workspace) -> None:
        put(context, workspace, "vip", {"trait": "net_spend", "op": "gte", "value": 5000})
        finished = utcnow()
        with context.store.transaction() as session:  # a computation counted it …
            session.add(InsightRun(workspace_id=workspace.id, as_of=datetime(2026, 1, 1, tzinfo=UTC),
                                   finished_at=finished, status="done", summary={"tags": {"vip": 3}}))
        put(context, workspace, "fresh", {"trait": "orders", "op": "eq", "value": 1})  # … but not this one
        client = signed_in(console, context, workspace, "analyst")

        page = client.get("/insight/tags")
        denied = client.post("/insight/tags", data={"csrf_token": csrf_in(page.text), "name": "x", "rule": RULE})

        assert page.status_code == 200 and 'data-testid="nav-tags"' in page.text
        assert texts_by_testid(page.text, "tag-link") == ["fresh", "vip"]
        assert texts_by_testid(page.text, "tag-members") == ["not computed", "3"]
        # the counts describe the run's as-of moment, not the time it ran
        assert texts_by_testid(page.text, "counts-as-of") == ["as of 2026-01-01 00:00"]
        assert texts_by_testid(page.text, "counts-computed-at") == [f"(computed {finished:%Y-%m-%d %H:%M})"]
        assert "op: gte" in page.text and "value: 5000" in page.text
        assert 'data-testid="tag-create-form"' not in page.text and 'data-testid="tag-delete"' not in page.text
        assert denied.status_code == 403 and current(context, workspace) == {"fresh": 1, "vip": 1}

    def test_marketer_creates_a_tag_audited(self, console: TestClient, context: Context,
                                            workspace: Workspace) -> None:
        client = signed_in(console, context, workspace, "marketer")
        page = client.get("/insight/tags")

        response = client.post("/insight/tags", follow_redirects=False, data={
            "csrf_token": csrf_in(page.text), "name": "repeat_buyer", "description": "two orders or more",
            "rule": RULE})

        assert response.status_code == 303 and response.headers["location"] == "/insight/tags?saved=repeat_buyer"
        assert current(context, workspace) == {"repeat_buyer": 1}
        with context.store.read() as session:
            entries = audit.recent(session, workspace.id, 20)
        assert any(e.action == "tag.put" and e.actor_type == "user" and e.target_id == "repeat_buyer" for e in entries)

    def test_invalid_forms_are_explained_and_save_nothing(self, console: TestClient, context: Context,
                                                          workspace: Workspace) -> None:
        client = signed_in(console, context, workspace, "admin")
        token = csrf_in(client.get("/insight/tags").text)

        for name, rule, testid, expected in [
            ("ok_name", "all:\n  - trait: bogus\n    op: gte\n    value: 2\n", "tag-rule-error",
             "line 2 · Unknown trait 'bogus'"),
            ("ok_name", "trait: orders\nop: [\n", "tag-rule-error", "line 3 · Not valid YAML"),
            ("ok_name", "", "tag-rule-error", "A tag needs a rule."),
            ("Bad Name", RULE, "tag-name-error", "A tag name is lower case letters"),
        ]:
            response = client.post("/insight/tags", data={"csrf_token": token, "name": name, "rule": rule})

            assert response.status_code == 422, expected
            assert unescape(texts_by_testid(response.text, testid, "small")[0]).startswith(expected)
        assert current(context, workspace) == {}

    def test_create_never_overwrites_but_a_double_submit_is_harmless(self, console: TestClient, context: Context,
                                                                     workspace: Workspace) -> None:
        client = signed_in(console, context, workspace, "admin")
        form = {"csrf_token": csrf_in(client.get("/insight/tags").text), "name": "repeat_buyer", "rule": RULE}

        first = client.post("/insight/tags", data=form, follow_redirects=False)
        again = client.post("/insight/tags", data=form, follow_redirects=False)
        other = client.post("/insight/tags", data={**form, "rule": "trait: orders\nop: gte\nvalue: 9\n"})

        assert first.status_code == again.status_code == 303
        assert other.status_code == 409 and "already exists" in other.text
        assert current(context, workspace) == {"repeat_buyer": 1}

    def test_edit_makes_a_version_and_delete_retires(self, console: TestClient, context: Context,
                                                     workspace: Workspace) -> None:
        put(context, workspace, "repeat_buyer", {"trait": "orders", "op": "gte", "value": 2})
        client = signed_in(console, context, workspace, "marketer")
        page = client.get("/insight/tags/repeat_buyer")
        token = csrf_in(page.text)
        assert "value: 2" in texts_by_testid(page.text, "tag-rule", "textarea")[0]

        edited = client.post("/insight/tags/repeat_buyer", follow_redirects=False,
                             data={"csrf_token": token, "rule": "trait: orders\nop: gte\nvalue: 3\n"})
        bad = client.post("/insight/tags/repeat_buyer", data={"csrf_token": token, "rule": "trait: orders\n"})
        deleted = client.post("/insight/tags/repeat_buyer/delete", data={"csrf_token": token}, follow_redirects=False)
        deleted_again = client.post("/insight/tags/repeat_buyer/delete", data={"csrf_token": token})

        assert edited.status_code == 303
        assert bad.status_code == 422 and texts_by_testid(bad.text, "tag-rule-error-line", "span") == ["line 1"]
        assert deleted.status_code == 303 and deleted.headers["location"] == "/insight/tags?deleted=repeat_buyer"
        assert deleted_again.status_code == 404
        assert current(context, workspace) == {}
        with context.store.read() as session:
            actions = [e.action for e in audit.recent(session, workspace.id, 20) if e.target_id == "repeat_buyer"]
        assert actions.count("tag.put") == 2 and actions.count("tag.delete") == 1

    def test_analyst_sees_a_tag_read_only_and_cannot_delete(self, console: TestClient, context: Context,
                                                            workspace: Workspace) -> None:
        put(context, workspace, "vip", {"trait": "net_spend", "op": "gte", "value": 5000})
        client = signed_in(console, context, workspace, "analyst")

        page = client.get("/insight/tags/vip")
        denied = client.post("/insight/tags/vip/delete", data={"csrf_token": csrf_in(page.text)})

        assert page.status_code == 200 and 'data-testid="tag-edit-form"' not in page.text
        assert denied.status_code == 403 and current(context, workspace) == {"vip": 1}

    def test_a_form_without_the_token_is_403(self, console: TestClient, context: Context,
                                             workspace: Workspace) -> None:
        client = signed_in(console, context, workspace, "admin")

        assert client.post("/insight/tags", data={"name": "x", "rule": RULE}).status_code == 403
        assert current(context, workspace) == {}
