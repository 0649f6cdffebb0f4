"""Each workspace's OneID settings: validated, versioned, audited, and followed by batch and live resolution."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from memberops.accounts.models import Workspace
from memberops.api.app import create_app
from memberops.audit.models import AuditEntry
from memberops.audit.service import Actor
from memberops.identity import config
from memberops.identity.errors import InvalidIdentityConfig
from memberops.identity.models import FlaggedIdentifier
from memberops.identity.service import resolve_customer
from memberops.runtime import Context
from tests.factories import make_key
from tests.identity.test_resolve import _import, _resolve
from tests.test_cli import run


class TestDocument:
    def test_a_workspace_that_never_set_anything_runs_on_the_defaults(
        self, context: Context, workspace: Workspace
    ) -> None:
        with context.store.read() as session:
            settings, version = config.current(session, workspace.id)
        assert version == 0 and settings == config.DEFAULT
        assert settings.strong_types[0] == "wechat_unionid" and "test@test.com" in settings.blocked_values

    @pytest.mark.parametrize(("document", "field"), [
        ({"strong_types": ["phone", "shoe_size"]}, "strong_types"),
        ({"strong_types": []}, "strong_types"),
        ({"max_records_per_identifier": 1}, "max_records_per_identifier"),
        ({"max_per_person": {"email": 0}}, "max_per_person"),
        ({"match_threshold": 0.6, "review_threshold": 0.7}, ""),
        ({"threshold": 0.9}, "threshold"),
    ])
    def test_a_bad_document_is_refused_with_every_problem_and_stores_nothing(
        self, context: Context, workspace: Workspace, document: dict[str, object], field: str
    ) -> None:
        with pytest.raises(InvalidIdentityConfig) as caught, context.store.transaction() as session:
            config.update(session, workspace.id, document, actor=Actor.cli())
        assert caught.value.code == "invalid_identity_config"
        assert any(p["field"] == field for p in caught.value.facts["problems"])
        with context.store.read() as session:
            assert config.current(session, workspace.id)[1] == 0

    def test_each_change_is_a_version_and_audited_without_values(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            config.update(session, workspace.id, {"blocked_values": ["+8613912345678"]}, actor=Actor.cli())
        with context.store.transaction() as session:
            settings, version = config.update(session, workspace.id, {"strong_types": ["email", "phone"]},
                                              actor=Actor.cli())
        assert version == 2 and settings.strong_types == ("email", "phone")
        assert settings.blocked_values == config.DEFAULT.blocked_values  # a field left out is the default again
        with context.store.read() as session:
            entries = session.scalars(select(AuditEntry).where(AuditEntry.action == "identity.config.update")
                                      .order_by(AuditEntry.id)).all()
        assert [e.detail["changed"] for e in entries] == [["blocked_values"], ["blocked_values", "strong_types"]]
        assert "+8613912345678" not in str([e.detail for e in entries])


def _customer(context: Context, workspace: Workspace, source_id: str, **identifiers: str) -> str:
    with context.store.transaction() as session:
        return resolve_customer(session, workspace, channel="pos", source_id=source_id,
                                identifiers=identifiers).member.id


class TestLivePath:
    def test_a_blocked_value_never_joins_two_customers(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            config.update(session, workspace.id, {"blocked_values": ["+8613912345678"]}, actor=Actor.cli())
        assert _customer(context, workspace, "a", phone="13912345678") != _customer(
            context, workspace, "b", phone="139 1234 5678")

    def test_a_default_placeholder_never_joins_two_customers(self, context: Context, workspace: Workspace) -> None:
        assert _customer(context, workspace, "a", email="test@test.com") != _customer(
            context, workspace, "b", email="TEST@test.com")

    def test_only_the_strong_types_join(self, context: Context, workspace: Workspace) -> None:
        assert _customer(context, workspace, "a", phone="13800138001") == _customer(
            context, workspace, "b", phone="13800138001")
        with context.store.transaction() as session:
            config.update(session, workspace.id, {"strong_types": ["email"]}, actor=Actor.cli())
        assert _customer(context, workspace, "c", phone="13800138002") != _customer(
            context, workspace, "d", phone="13800138002")

    def test_an_identifier_the_batch_run_flagged_never_joins(self, context: Context, workspace: Workspace) -> None:
        first = _customer(context, workspace, "a", phone="13800138001")
        with context.store.transaction() as session:
            session.add(FlaggedIdentifier(workspace_id=workspace.id, type="phone", value="+8613800138001",
                                          records=40, run_id="r"))
        assert _customer(context, workspace, "b", phone="13800138001") != first


class TestBatchRun:
    def test_resolution_follows_the_workspace_settings(
        self, context: Context, workspace: Workspace, tmp_path: Path
    ) -> None:
        _import(context, workspace, tmp_path, "a.csv", "r1,13800138001,a@x.com,\nr2,13800138001,b@x.com,\n")
        assert len(set(_resolve(context, workspace).values())) == 1
        with context.store.transaction() as session:
            config.update(session, workspace.id, {"strong_types": ["email"]}, actor=Actor.cli())
        assert len(set(_resolve(context, workspace).values())) == 2


class TestFaces:
    def test_api_reads_for_read_scope_and_writes_for_admin(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            admin, reader = make_key(session, workspace, "admin"), make_key(session, workspace, "read")
        with TestClient(create_app(context)) as client:
            got = client.get("/api/v1/identity/config", headers={"Authorization": f"Bearer {reader}"})
            assert got.status_code == 200 and got.json()["version"] == 0
            body = {"strong_types": ["phone", "email"], "match_threshold": 0.95}
            refused = client.put("/api/v1/identity/config", json=body, headers={"Authorization": f"Bearer {reader}"})
            assert refused.status_code == 403
            put = client.put("/api/v1/identity/config", json=body, headers={"Authorization": f"Bearer {admin}"})
            assert put.status_code == 200, put.text
            assert put.json()["version"] == 1 and put.json()["config"]["match_threshold"] == 0.95
            bad = client.put("/api/v1/identity/config", json={"strong_types": ["fax"]},
                             headers={"Authorization": f"Bearer {admin}"})
            assert bad.status_code == 422 and bad.json()["code"] == "validation_error"

    def test_cli_show_edit_set(self, tmp_path: Path) -> None:
        data = tmp_path / "d"
        assert run(data, "init").returncode == 0
        shown = run(data, "identity", "config", "show", "--out", str(tmp_path / "id.yaml"))
        assert shown.returncode == 0, shown.stderr
        text = (tmp_path / "id.yaml").read_text()
        assert "version 0 (defaults)" in text and "strong_types:" in text
        (tmp_path / "id.yaml").write_text(text.replace("match_threshold: 0.9", "match_threshold: 0.93"))
        done = run(data, "identity", "config", "set", str(tmp_path / "id.yaml"))
        assert done.returncode == 0, done.stderr
        assert "match_threshold: 0.93" in run(data, "identity", "config", "show").stdout
        (tmp_path / "bad.yaml").write_text("strong_types: [fax]\n")
        refused = run(data, "identity", "config", "set", str(tmp_path / "bad.yaml"))
        assert refused.returncode == 2 and "invalid_identity_config" in refused.stderr
        # edited from the defaults (version 0) after version 1 was saved: refused, nothing stored
        (tmp_path / "id.yaml").write_text(text.replace("match_threshold: 0.9", "match_threshold: 0.97"))
        stale = run(data, "identity", "config", "set", str(tmp_path / "id.yaml"), "--based-on", "0")
        assert stale.returncode == 4 and "settings_conflict" in stale.stderr
        assert "match_threshold: 0.93" in run(data, "identity", "config", "show").stdout
        current = run(data, "identity", "config", "set", str(tmp_path / "id.yaml"), "--based-on", "1")
        assert current.returncode == 0 and "version 2" in current.stdout, current.stderr
