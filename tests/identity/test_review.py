"""The review queue: CLI, console and service, on every state store."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from memberops.accounts.models import Workspace
from memberops.api.app import create_app
from memberops.audit.service import Actor
from memberops.identity import review
from memberops.identity.models import IdentityDecision
from memberops.runtime import Context
from tests.console import csrf_in, log_in
from tests.factories import make_user
from tests.identity.test_resolve import _import, _resolve


@pytest.fixture
def queued(context: Context, workspace: Workspace, tmp_path: Path) -> int:
    """Two records that share nothing strong, queued as a likely pair (as the matcher would)."""
    _import(context, workspace, tmp_path, "a.csv", "r1,13800138001,,\nr2,13900139000,,\n")
    _resolve(context, workspace)
    with context.store.transaction() as session:
        review.queue_pairs(session, workspace.id, "run-1", [
            {"channel_a": "crm", "source_id_a": "r1", "channel_b": "crm", "source_id_b": "r2",
             "match_probability": 0.83}])
        review.queue_pairs(session, workspace.id, "run-2", [  # queued again by a later run: no duplicate
            {"channel_a": "crm", "source_id_a": "r1", "channel_b": "crm", "source_id_b": "r2",
             "match_probability": 0.84}])
        return review.open_pairs(session, workspace.id)[0].id


class TestReview:
    def test_accept_merges_at_the_next_run(self, context: Context, workspace: Workspace, queued: int) -> None:
        with context.store.read() as session:
            assert review.count_open(session, workspace.id) == 1
        with context.store.transaction() as session:
            review.decide_pair(session, workspace, queued, accept=True, actor=Actor.cli())
        members = _resolve(context, workspace)
        assert members["crm/r1"] == members["crm/r2"]
        with pytest.raises(review.ReviewPairDecided), context.store.transaction() as session:
            review.decide_pair(session, workspace, queued, accept=False, actor=Actor.cli())

    def test_console_shows_and_decides(self, context: Context, workspace: Workspace, queued: int) -> None:
        with context.store.transaction() as session:
            make_user(session, workspace, role="marketer", email="m@example.com")
            make_user(session, workspace, role="analyst", email="a@example.com")
        with TestClient(create_app(context)) as client:
            for email in ("a@example.com", "m@example.com"):
                client.cookies.clear()
                assert log_in(client, email).status_code == 303
                page = client.get("/identity/review")
                assert page.status_code == 200 and 'data-testid="review-pair"' in page.text
                if email.startswith("a@"):  # contact details masked for analysts, as on the profile
                    assert "+86138****8001" in page.text and "+86139****9000" in page.text
                    assert "+8613800138001" not in page.text and "+8613900139000" not in page.text
                else:
                    assert "+8613800138001" in page.text and "+8613900139000" in page.text
                decided = client.post(f"/identity/review/{queued}", follow_redirects=False,
                                      data={"csrf_token": csrf_in(page.text), "decision": "reject"})
                if email.startswith("a@"):
                    assert decided.status_code == 403  # analysts look, they do not decide
                else:
                    assert decided.status_code == 303
        with context.store.read() as session:
            kinds = [d.kind for d in session.scalars(select(IdentityDecision))]
        assert kinds == ["pin_apart"]
