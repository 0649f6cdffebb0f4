"""Tiers over HTTP, on the CLI, in the job queue and on the profile card (issue 6, "Tiers"), on every store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from memberops.accounts.models import Workspace
from memberops.config import Settings
from memberops.loyalty.profile import loyalty_section
from memberops.runtime import Context
from tests.loyalty.factories import enrol, set_programme
from tests.loyalty.test_api import client, headers, pos, problem  # noqa: F401  (fixtures)
from tests.test_cli import run

TIERS = [{"code": "silver", "name": "Silver", "threshold": "500"},
         {"code": "gold", "name": "Gold", "threshold": "1000", "earn_multiplier": "1.5"}]


def order(http: TestClient, auth: dict[str, str], order_id: str, paid: str) -> int:
    response = http.post("/api/v1/orders", headers=auth, json={
        "channel": "pos", "order_id": order_id, "customer_key": "c1", "paid_amount": paid,
        "ordered_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat()})
    assert response.status_code == 201, response.text
    return int(response.json()["points_earned"])


def test_a_member_s_tier_over_http(client: TestClient, context: Context, workspace: Workspace,  # noqa: F811
                                   pos: dict[str, str]) -> None:  # noqa: F811
    admin = headers(context, workspace, "admin", "read")
    assert client.put("/api/v1/loyalty/programme", json={"tiers": TIERS}, headers=admin).status_code == 200
    member = client.post("/api/v1/members", headers=pos, json={"channel": "pos", "source_id": "c1",
                                                               "phone": "+8613800000001"}).json()["member_id"]
    assert order(client, pos, "o1", "600.00") == 600
    assert client.get(f"/api/v1/members/{member}/points", headers=pos).json()["tier"] == "silver"
    body = client.get(f"/api/v1/members/{member}/tier", headers=pos).json()
    assert (body["tier"], body["name"], body["metric"], body["metric_value"]) == ("silver", "Silver", "spend", "600.00")
    assert body["next_tier"] == {"tier": "gold", "threshold": "1000", "missing": "400.00"}
    assert [(h["from_tier"], h["to_tier"], h["reason"]) for h in body["history"]] == [(None, "silver", "upgrade")]

    assert client.post(f"/api/v1/members/{member}/tier", json={"tier": "gold", "reason": "VIP"},
                       headers=pos).status_code == 403  # admin only
    problem(client.post(f"/api/v1/members/{member}/tier", json={"tier": "platinum", "reason": "VIP"}, headers=admin),
            422, "unknown_tier")
    problem(client.post(f"/api/v1/members/{member}/tier", json={"tier": "gold", "reason": ""}, headers=admin),
            422, "validation_error")
    problem(client.get("/api/v1/members/nobody/tier", headers=pos), 404, "member_not_found")
    manual = client.post(f"/api/v1/members/{member}/tier", json={"tier": "gold", "reason": "VIP"}, headers=admin)
    assert manual.status_code == 200, manual.text
    assert manual.json()["tier"] == "gold" and manual.json()["next_tier"] is None
    assert manual.json()["history"][0] | {"at": None} == {
        "from_tier": "silver", "to_tier": "gold", "reason": "manual", "period": "", "metric_value": "", "note": "VIP",
        "actor": manual.json()["history"][0]["actor"], "programme_version": 2, "at": None}
    audit = client.get("/api/v1/audit", headers=admin).json()[0]
    assert audit["action"] == "loyalty.tier.set" and audit["detail"] == {"from": "silver", "to": "gold"}
    assert order(client, pos, "o2", "100.00") == 150  # gold earns ×1.5

    with context.store.read() as session:
        card = loyalty_section(session, workspace.id, member)
    assert card is not None and card["tier"] == "gold"


def test_evaluate_tiers_on_the_cli_and_in_the_queue(tmp_path: Path) -> None:
    from memberops.jobs.queue import build_queue

    data = tmp_path / "d"
    assert run(data, "init").returncode == 0
    context = Context.from_settings(Settings(data_dir=data))
    try:
        with context.store.transaction() as session:
            from memberops.accounts.service import get_workspace
            from memberops.loyalty import tiers
            from tests.loyalty.factories import post_order

            workspace = get_workspace(session, "default")
            set_programme(session, workspace, tiers=TIERS, tier_rules={"window": "calendar_year"})
            member = enrol(session, workspace)
            post_order(session, workspace, paid="1200.00", ordered_at=datetime(2025, 3, 1, tzinfo=UTC))
        done = run(data, "loyalty", "evaluate-tiers", "--as-of", "2025-06-01")
        assert done.returncode == 0, done.stderr
        assert "upgraded" in done.stdout and "members in gold" in done.stdout
        again = run(data, "loyalty", "evaluate-tiers", "--as-of", "2025-06-01")
        assert again.returncode == 0, again.stderr
        (upgraded,) = [line for line in again.stdout.splitlines() if "upgraded" in line]
        assert upgraded.replace("│", " ").split()[-1] == "0"
        with context.store.read() as session:
            assert [c.reason for c in tiers.tier_status(session, workspace, member).history] == ["upgrade"]
        assert run(data, "loyalty", "evaluate-tiers", "--as-of", "soon").returncode == 2

        huey = build_queue(context)
        periodic = {task.__name__: task for task in huey._registry._periodic_tasks}
        assert "loyalty.tiers.periodic" in periodic
        with context.store.transaction() as session:
            from memberops.audit.service import Actor

            idle = enrol(session, workspace, "c2")
            tiers.set_tier(session, workspace, idle, "silver", reason="trial", actor=Actor.cli(),
                           now=datetime(2025, 7, 1, tzinfo=UTC))
        assert periodic["loyalty.tiers.periodic"]().execute() >= 1  # now: the idle member's year is judged
        with context.store.read() as session:
            assert tiers.tier_status(session, workspace, idle).tier is None
            assert [c.reason for c in tiers.tier_status(session, workspace, idle).history] == ["downgrade", "manual"]
    finally:
        context.close()
