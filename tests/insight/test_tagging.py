"""Tag definitions: versioned in the state store, audited, edited by the API and the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from memberops.accounts.models import Workspace
from memberops.api.app import create_app
from memberops.audit.models import AuditEntry
from memberops.audit.service import Actor
from memberops.insight import tagging
from memberops.insight.errors import InvalidTag, TagNotFound
from memberops.insight.models import TagVersion
from memberops.insight.tags import TagDefinition
from memberops.runtime import Context
from tests.factories import make_key

PRICE_SENSITIVE = {"trait": "discount_share", "op": "gte", "value": 0.3}


def _tag(name: str = "price_sensitive", rule: dict[str, object] | None = None) -> TagDefinition:
    return TagDefinition.model_validate({"name": name, "rule": rule or PRICE_SENSITIVE})


class TestTagStore:
    def test_versions_replays_and_deletion(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            first, changed = tagging.put_tag(session, workspace.id, _tag(), actor=Actor.cli())
            assert (first.version, changed) == (1, True)
            replay, changed = tagging.put_tag(session, workspace.id, _tag(), actor=Actor.cli())
            assert (replay.version, changed) == (1, False)
            stricter = {"trait": "discount_share", "op": "gte", "value": 0.5}
            second, changed = tagging.put_tag(session, workspace.id, _tag(rule=stricter), actor=Actor.cli())
            assert (second.version, changed) == (2, True)
            definition, _ = tagging.get_tag(session, workspace.id, "price_sensitive")
            assert definition.rule.value == 0.5  # type: ignore[union-attr]
            tagging.delete_tag(session, workspace.id, "price_sensitive", actor=Actor.cli())
            assert tagging.list_tags(session, workspace.id) == []
            with pytest.raises(TagNotFound):
                tagging.get_tag(session, workspace.id, "price_sensitive")
            with pytest.raises(TagNotFound):
                tagging.delete_tag(session, workspace.id, "price_sensitive", actor=Actor.cli())
            assert len(session.scalars(select(TagVersion)).all()) == 3  # the history stays
            actions = session.scalars(select(AuditEntry.action).where(AuditEntry.target_type == "tag")).all()
            assert sorted(actions) == ["tag.delete", "tag.put", "tag.put"]

    def test_yaml_file(self, tmp_path: Path) -> None:
        path = tmp_path / "tags.yaml"
        path.write_text("tags:\n  - name: new_mom\n    rule:\n      bought: {category: newborn, within_days: 90}\n"
                        "  - name: lapsed\n    rule:\n      not: {trait: days_since_last_purchase, op: lt, value: 180}\n")
        tags = tagging.read_tag_file(path)
        assert [t.name for t in tags] == ["new_mom", "lapsed"]
        path.write_text("tags:\n  - name: bad\n    rule: {trait: shoe_size, op: gt, value: 3}\n")
        with pytest.raises(InvalidTag, match="shoe_size"):
            tagging.read_tag_file(path)


@pytest.fixture
def client(context: Context) -> Iterator[TestClient]:
    with TestClient(create_app(context)) as client:
        yield client


def _auth(context: Context, workspace: Workspace, *scopes: str) -> dict[str, str]:
    with context.store.transaction() as session:
        return {"Authorization": f"Bearer {make_key(session, workspace, *scopes)}"}


class TestTagsApi:
    def test_put_get_delete(self, client: TestClient, context: Context, workspace: Workspace) -> None:
        admin = _auth(context, workspace, "admin")
        body = {"description": "buys on discount", "rule": PRICE_SENSITIVE}
        created = client.put("/api/v1/tags/price_sensitive", json=body, headers=admin)
        assert created.status_code == 201, created.text
        assert created.json()["version"] == 1
        replay = client.put("/api/v1/tags/price_sensitive", json=body, headers=admin)
        assert replay.status_code == 200 and replay.json()["version"] == 1
        got = client.get("/api/v1/tags/price_sensitive", headers=_auth(context, workspace, "read"))
        assert got.json()["rule"] == PRICE_SENSITIVE and got.json()["description"] == "buys on discount"
        assert [t["name"] for t in client.get("/api/v1/tags", headers=admin).json()["items"]] == ["price_sensitive"]
        assert client.delete("/api/v1/tags/price_sensitive", headers=admin).status_code == 204
        missing = client.get("/api/v1/tags/price_sensitive", headers=admin)
        assert missing.status_code == 404 and missing.json()["code"] == "tag_not_found"

    def test_writing_needs_admin_and_a_valid_rule(self, client: TestClient, context: Context,
                                                  workspace: Workspace) -> None:
        body = {"rule": PRICE_SENSITIVE}
        forbidden = client.put("/api/v1/tags/x", json=body, headers=_auth(context, workspace, "read"))
        assert forbidden.status_code == 403
        admin = _auth(context, workspace, "admin")
        bad = client.put("/api/v1/tags/x", json={"rule": {"trait": "orders", "op": "in", "value": 3}}, headers=admin)
        assert bad.status_code == 422 and bad.json()["code"] == "validation_error"
        bad_name = client.put("/api/v1/tags/Not-A-Slug", json=body, headers=admin)
        assert bad_name.status_code == 422
