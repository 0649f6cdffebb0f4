"""Each workspace's insight settings: defaults until set, validated, versioned, audited by field name, and
followed by ``insight compute``."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from memberops.accounts.models import Workspace
from memberops.api.app import create_app
from memberops.audit.models import AuditEntry
from memberops.audit.service import Actor
from memberops.insight import config_store
from memberops.insight.errors import InvalidInsightConfig
from memberops.insight.models import InsightConfigVersion, InsightRun
from memberops.insight.snapshot import compute_insight
from memberops.runtime import Context
from tests.factories import make_key
from tests.insight.lake import AS_OF
from tests.insight.test_snapshot import _brand
from tests.test_cli import run

# Bob's last purchase was 200 days before AS_OF: at risk by default (180 days), churned past 190.
SHORTER_LIFECYCLE = {"lifecycle": {"at_risk_days": 100, "churned_days": 190}}


class TestDocument:
    def test_defaults_until_set_and_a_read_writes_nothing(self, context: Context, workspace: Workspace) -> None:
        with context.store.read() as session:
            assert config_store.current(session, workspace.id) == config_store.DEFAULT
            assert config_store.current_version(session, workspace.id)[1] == 0
        with context.store.read() as session:
            assert session.scalar(select(func.count(InsightConfigVersion.id))) == 0

    @pytest.mark.parametrize(("document", "field"), [
        ({"rfm": {"window_days": 0}}, "rfm.window_days"),
        ({"lifecycle": {"at_risk_days": 200, "churned_days": 100}}, "lifecycle"),
        ({"rfm": {"windows": 30}}, "rfm.windows"),
        (["rfm"], ""),
    ])
    def test_a_bad_document_names_the_field_and_stores_nothing(
        self, context: Context, workspace: Workspace, document: object, field: str
    ) -> None:
        with pytest.raises(InvalidInsightConfig) as caught, context.store.transaction() as session:
            config_store.update(session, workspace.id, document, actor=Actor.cli())
        assert caught.value.code == "invalid_insight_config"
        assert [p["field"] for p in caught.value.facts["problems"]] == [field]
        with context.store.read() as session:
            assert config_store.current_version(session, workspace.id)[1] == 0

    def test_each_change_is_a_version_audited_by_field_name(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            config_store.update(session, workspace.id, SHORTER_LIFECYCLE, actor=Actor.cli())
        with context.store.transaction() as session:
            settings, version = config_store.update(session, workspace.id, {"rfm": {"window_days": 77}},
                                                    actor=Actor.cli())
        assert version == 2 and settings.rfm.window_days == 77
        with context.store.transaction() as session:  # the same settings again: a replay, no new version
            assert config_store.update(session, workspace.id, {"rfm": {"window_days": 77}},
                                       actor=Actor.cli()) == (settings, 2)
        assert settings.lifecycle == config_store.DEFAULT.lifecycle  # a field left out is the default again
        with context.store.read() as session:
            assert config_store.current(session, workspace.id) == settings
            entries = session.scalars(select(AuditEntry).where(AuditEntry.action == "insight.config.update")
                                      .order_by(AuditEntry.id)).all()
        assert [e.detail["changed"] for e in entries] == [
            ["lifecycle.at_risk_days", "lifecycle.churned_days"],
            ["lifecycle.at_risk_days", "lifecycle.churned_days", "rfm.window_days"]]
        assert "190" not in str([e.detail for e in entries]) and "77" not in str([e.detail for e in entries])


class TestCompute:
    def test_insight_compute_follows_the_stored_settings(self, context: Context, workspace: Workspace) -> None:
        _brand(workspace).write(context.settings.lake_path)
        before = compute_insight(context, workspace, actor=Actor.cli(), as_of=AS_OF)
        assert before.lifecycle == {"prospect": 1, "new": 0, "active": 1, "loyal": 0, "at_risk": 1, "churned": 0}
        with context.store.transaction() as session:
            config_store.update(session, workspace.id, SHORTER_LIFECYCLE, actor=Actor.cli())
        after = compute_insight(context, workspace, actor=Actor.cli(), as_of=AS_OF)
        assert after.lifecycle == {"prospect": 1, "new": 0, "active": 1, "loyal": 0, "at_risk": 0, "churned": 1}
        assert after.changes == {"lifecycle_stage": 1}
        with context.store.read() as session:
            runs = session.scalars(select(InsightRun).order_by(InsightRun.finished_at)).all()
        assert [r.summary["config_version"] for r in runs] == [0, 1]


class TestFaces:
    def test_api_reads_for_read_scope_and_writes_for_admin(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            admin, reader = make_key(session, workspace, "admin"), make_key(session, workspace, "read")
        as_admin, as_reader = {"Authorization": f"Bearer {admin}"}, {"Authorization": f"Bearer {reader}"}
        with TestClient(create_app(context)) as client:
            got = client.get("/api/v1/insight/config", headers=as_reader)
            assert got.status_code == 200 and got.json()["version"] == 0
            assert got.json()["config"]["lifecycle"]["at_risk_days"] == 180
            assert client.put("/api/v1/insight/config", json=SHORTER_LIFECYCLE, headers=as_reader).status_code == 403
            put = client.put("/api/v1/insight/config", json=SHORTER_LIFECYCLE, headers=as_admin)
            assert put.status_code == 200, put.text
            assert put.json()["version"] == 1 and put.json()["config"]["lifecycle"]["churned_days"] == 190
            bad = client.put("/api/v1/insight/config", json={"rfm": {"window_days": 0}}, headers=as_admin)
            assert bad.status_code == 422 and bad.json()["code"] == "validation_error"
            assert [e["field"] for e in bad.json()["errors"]] == ["rfm.window_days"]
            assert client.get("/api/v1/insight/config", headers=as_reader).json()["version"] == 1

    def test_cli_show_edit_set(self, tmp_path: Path) -> None:
        data = tmp_path / "d"
        assert run(data, "init").returncode == 0
        shown = run(data, "insight", "config", "show", "--out", str(tmp_path / "insight.yaml"))
        assert shown.returncode == 0, shown.stderr
        text = (tmp_path / "insight.yaml").read_text()
        assert "version 0 (defaults)" in text and "at_risk_days: 180" in text
        (tmp_path / "insight.yaml").write_text(text.replace("at_risk_days: 180", "at_risk_days: 120"))
        done = run(data, "insight", "config", "set", str(tmp_path / "insight.yaml"))
        assert done.returncode == 0, done.stderr
        again = run(data, "insight", "config", "show").stdout
        assert "version 1" in again and "at_risk_days: 120" in again
        (tmp_path / "bad.yaml").write_text("lifecycle: {at_risk_days: 400}\n")
        refused = run(data, "insight", "config", "set", str(tmp_path / "bad.yaml"))
        assert refused.returncode == 2 and "invalid_insight_config" in refused.stderr and "lifecycle" in refused.stderr
        (tmp_path / "insight.yaml").write_text(text.replace("at_risk_days: 180", "at_risk_days: 150"))
        stale = run(data, "insight", "config", "set", str(tmp_path / "insight.yaml"), "--based-on", "0")
        assert stale.returncode == 4 and "settings_conflict" in stale.stderr  # version 1 was saved since
        assert "at_risk_days: 120" in run(data, "insight", "config", "show").stdout
