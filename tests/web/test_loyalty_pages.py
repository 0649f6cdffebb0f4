"""Console loyalty pages through the real app, on every store: the programme (read, edit as YAML, errors by
line, stale edits, double submit), the liability (the API's numbers), and the member page's points panel
with the admin "adjust points" form (roles, CSRF, validation, a double submit applied once)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from memberops.accounts.models import Workspace
from memberops.audit import service as audit
from memberops.audit.service import Actor
from memberops.db.base import utcnow
from memberops.loyalty import points, programmes
from memberops.runtime import Context
from tests import factories
from tests.console import csrf_in, form_value, signed_in, texts_by_testid
from tests.loyalty import factories as loyalty
from tests.loyalty.coupon_factories import make_member

PROGRAMME = """name: Club
point_value: '0.02'
enrolment: {welcome_points: 100}
earn:
  member_days: [{day_of_month: 8, multiplier: 2}]
tiers:
  - {code: silver, name: Silver, threshold: 1000}
  - {code: gold, name: Gold, threshold: 5000, benefits: [{code: queue-skip, quantity: 2}]}
"""


def active_version(context: Context, workspace: Workspace) -> int:
    with context.store.read() as session:
        return programmes.active_programme(session, workspace.id).version


class TestProgrammePage:
    def test_every_role_reads_it_only_admins_get_the_form(self, console: TestClient, context: Context,
                                                           workspace: Workspace) -> None:
        page = signed_in(console, context, workspace, "analyst").get("/loyalty/programme")

        assert page.status_code == 200
        assert texts_by_testid(page.text, "programme-version") == ["1"]
        assert 'data-testid="programme-form"' not in page.text
        assert "rolling_months" in page.text  # the YAML, read-only
        assert 'data-testid="nav-programme"' in page.text and 'data-testid="nav-liability"' in page.text

    def test_admin_saves_a_new_audited_version(self, console: TestClient, context: Context,
                                               workspace: Workspace) -> None:
        client = signed_in(console, context, workspace, "admin")
        page = client.get("/loyalty/programme")

        response = client.post("/loyalty/programme", follow_redirects=False, data={
            "csrf_token": csrf_in(page.text), "based_on": form_value(page.text, "based_on"), "programme": PROGRAMME})

        assert response.status_code == 303 and response.headers["location"] == "/loyalty/programme?saved=2"
        shown = client.get(response.headers["location"]).text
        assert texts_by_testid(shown, "programme-version") == ["2"]
        assert texts_by_testid(shown, "programme-welcome-points") == ["100"]
        assert texts_by_testid(shown, "programme-member-day") == ["day 8 of every month ×2"]
        assert texts_by_testid(shown, "programme-tier-threshold") == ["1000", "5000"]
        assert "queue-skip ×2" in shown
        assert texts_by_testid(shown, "programme-history-by") == ["admin@example.com", "system:default"]
        with context.store.read() as session:
            entries = audit.recent(session, workspace.id, 20)
        assert any(e.action == "loyalty.programme.update" and e.actor_type == "user" for e in entries)

    def test_errors_are_shown_by_line_and_nothing_is_saved(self, console: TestClient, context: Context,
                                                           workspace: Workspace) -> None:
        client = signed_in(console, context, workspace, "admin")
        page = client.get("/loyalty/programme")
        text = "name: Club\nearn:\n  rounding: sideways\ncolour: red\n"

        response = client.post("/loyalty/programme", data={
            "csrf_token": csrf_in(page.text), "based_on": "1", "programme": text})

        assert response.status_code == 422
        errors = texts_by_testid(response.text, "programme-error", "li")
        assert any(e.startswith("line 3 · earn.rounding:") for e in errors)
        assert any(e.startswith("line 4 · colour:") for e in errors)
        assert "rounding: sideways" in response.text  # the text as sent is kept for fixing
        not_yaml = client.post("/loyalty/programme", data={
            "csrf_token": csrf_in(page.text), "based_on": "1", "programme": "name: Club\nearn: [\n  x: 1\n"})
        assert not_yaml.status_code == 422 and texts_by_testid(not_yaml.text, "programme-error-line") == ["line 4"]
        assert active_version(context, workspace) == 1

    def test_an_edit_of_an_older_version_is_refused(self, console: TestClient, context: Context,
                                                    workspace: Workspace) -> None:
        client = signed_in(console, context, workspace, "admin")
        page = client.get("/loyalty/programme")
        with context.store.transaction() as session:  # a colleague saves version 2 meanwhile
            loyalty.set_programme(session, workspace, name="Colleague's")

        response = client.post("/loyalty/programme", data={
            "csrf_token": csrf_in(page.text), "based_on": form_value(page.text, "based_on"), "programme": PROGRAMME})

        assert response.status_code == 409
        assert "version 2 is now active" in response.text
        assert active_version(context, workspace) == 2

    def test_a_double_submit_makes_one_version(self, console: TestClient, context: Context,
                                               workspace: Workspace) -> None:
        client = signed_in(console, context, workspace, "admin")
        page = client.get("/loyalty/programme")
        form = {"csrf_token": csrf_in(page.text), "based_on": "1", "programme": PROGRAMME}

        first = client.post("/loyalty/programme", data=form, follow_redirects=False)
        second = client.post("/loyalty/programme", data=form, follow_redirects=False)

        assert first.status_code == second.status_code == 303
        assert active_version(context, workspace) == 2
        assert len(texts_by_testid(client.get("/loyalty/programme").text, "programme-history-row", "tr")) == 2

    def test_analyst_post_is_403_and_a_missing_token_too(self, console: TestClient, context: Context,
                                                         workspace: Workspace) -> None:
        client = signed_in(console, context, workspace, "analyst")
        page = client.get("/loyalty/programme")

        as_analyst = client.post("/loyalty/programme", data={"csrf_token": csrf_in(page.text), "programme": PROGRAMME})
        client.post("/logout", data={"csrf_token": csrf_in(page.text)})
        signed_in(console, context, workspace, "admin")
        without_token = client.post("/loyalty/programme", data={"programme": PROGRAMME})

        assert as_analyst.status_code == 403 and without_token.status_code == 403
        assert active_version(context, workspace) == 1


class TestLiabilityPage:
    def test_the_same_numbers_as_the_api(self, console: TestClient, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            key = factories.make_key(session, workspace, "read")
            loyalty.set_programme(session, workspace, point_value="0.05")
            for n, paid in enumerate(("120.00", "80.50")):
                loyalty.enrol(session, workspace, f"c{n}")
                loyalty.post_order(session, workspace, f"o{n}", customer_key=f"c{n}", paid=paid,
                                   ordered_at=utcnow() - timedelta(days=n + 1))
        api = console.get("/api/v1/loyalty/liability", headers={"Authorization": f"Bearer {key}"}).json()

        page = signed_in(console, context, workspace, "analyst").get("/loyalty/liability")

        assert page.status_code == 200
        assert texts_by_testid(page.text, "liability-points") == [f"{api['points']:,}"] == ["200"]
        assert texts_by_testid(page.text, "liability-value") == [api["value"]] == ["10.00"]
        assert texts_by_testid(page.text, "liability-month") == [m["month"] for m in api["by_expiry_month"]]
        assert texts_by_testid(page.text, "liability-month-value") == [m["value"] for m in api["by_expiry_month"]]

    def test_empty(self, console: TestClient, context: Context, workspace: Workspace) -> None:
        page = signed_in(console, context, workspace, "marketer").get("/loyalty/liability")

        assert page.status_code == 200 and 'data-testid="liability-empty"' in page.text


@pytest.fixture
def member(context: Context, workspace: Workspace) -> str:
    """An enrolled member who earned 100 points yesterday."""
    with context.store.transaction() as session:
        member_id = loyalty.enrol(session, workspace, "c1")
        loyalty.post_order(session, workspace, "o1", ordered_at=utcnow() - timedelta(days=1))
    return member_id


def adjust_form(client: TestClient, member_id: str) -> dict[str, str]:
    page = client.get(f"/members/{member_id}")
    return {"csrf_token": csrf_in(page.text), "idempotency_key": form_value(page.text, "idempotency_key")}


def ledger_kinds(context: Context, workspace: Workspace, member_id: str) -> list[str]:
    with context.store.read() as session:
        return [m.kind for m in points.ledger_page(session, workspace.id, member_id, limit=100)]


class TestPointsPanel:
    def test_balance_expiry_and_ledger(self, console: TestClient, context: Context, workspace: Workspace,
                                       member: str) -> None:
        page = signed_in(console, context, workspace, "marketer").get(f"/members/{member}")

        assert page.status_code == 200
        assert texts_by_testid(page.text, "points-available") == ["100"]
        assert texts_by_testid(page.text, "points-pending") == ["0"]
        assert len(texts_by_testid(page.text, "points-expiring-row", "tr")) == 1
        assert re.findall(r'data-testid="ledger-row" data-kind="(\w+)"', page.text) == ["earn"]
        assert 'data-testid="adjust-form"' not in page.text  # marketers do not adjust

    def test_tier_progress(self, console: TestClient, context: Context, workspace: Workspace, member: str) -> None:
        with context.store.transaction() as session:
            loyalty.set_programme(session, workspace, tiers=[{"code": "silver", "name": "Silver", "threshold": 400}])

        page = signed_in(console, context, workspace, "analyst").get(f"/members/{member}")

        assert texts_by_testid(page.text, "points-tier-next")[0].startswith("300.00 more spend for silver")
        assert '<progress max="100" value="25"' in page.text

    def test_admin_adjust_applies_once_on_a_double_submit(self, console: TestClient, context: Context,
                                                          workspace: Workspace, member: str) -> None:
        client = signed_in(console, context, workspace, "admin")
        form = {**adjust_form(client, member), "points": "+50", "reason": "goodwill"}

        first = client.post(f"/members/{member}/points/adjust", data=form, follow_redirects=False)
        second = client.post(f"/members/{member}/points/adjust", data=form, follow_redirects=False)

        assert first.status_code == second.status_code == 303
        assert first.headers["location"] == second.headers["location"] == f"/members/{member}?adjusted=50#points"
        page = client.get(first.headers["location"])
        assert texts_by_testid(page.text, "points-flash") == ["Points adjusted: +50."]
        assert texts_by_testid(page.text, "points-available") == ["150"]
        assert ledger_kinds(context, workspace, member) == ["adjust", "earn"]
        assert texts_by_testid(page.text, "ledger-reason")[0] == "goodwill"
        assert form["idempotency_key"] != form_value(page.text, "idempotency_key")  # a fresh key for the next one
        with context.store.read() as session:
            entries = [e for e in audit.recent(session, workspace.id, 20) if e.action == "loyalty.points.adjust"]
        assert len(entries) == 1 and entries[0].actor_type == "user"
        reused = client.post(f"/members/{member}/points/adjust", data={**form, "points": "70"})  # same key, new change
        assert reused.status_code == 409 and "already used" in reused.text
        assert form["idempotency_key"] != form_value(reused.text, "idempotency_key")
        assert ledger_kinds(context, workspace, member) == ["adjust", "earn"]

    def test_bad_input_is_explained_and_moves_nothing(self, console: TestClient, context: Context,
                                                      workspace: Workspace, member: str) -> None:
        client = signed_in(console, context, workspace, "admin")
        form = adjust_form(client, member)

        for points_text, reason, field in [("abc", "typo", "adjust-points-error"), ("0", "none", "adjust-points-error"),
                                           ("1.5", "half", "adjust-points-error"), ("10", "  ", "adjust-reason-error")]:
            response = client.post(f"/members/{member}/points/adjust",
                                   data={**form, "points": points_text, "reason": reason})

            assert response.status_code == 422, points_text
            assert texts_by_testid(response.text, field), points_text
        assert ledger_kinds(context, workspace, member) == ["earn"]

    def test_taking_more_than_available_is_409(self, console: TestClient, context: Context, workspace: Workspace,
                                               member: str) -> None:
        client = signed_in(console, context, workspace, "admin")

        response = client.post(f"/members/{member}/points/adjust",
                               data={**adjust_form(client, member), "points": "-1000", "reason": "clawback"})

        assert response.status_code == 409
        assert texts_by_testid(response.text, "adjust-error") == ["1000 points requested, 100 available."]
        assert ledger_kinds(context, workspace, member) == ["earn"]

    def test_marketer_post_is_403_and_admin_without_token_too(self, console: TestClient, context: Context,
                                                              workspace: Workspace, member: str) -> None:
        client = signed_in(console, context, workspace, "marketer")
        page = client.get(f"/members/{member}")
        form = {"csrf_token": csrf_in(page.text), "idempotency_key": "k-1", "points": "50", "reason": "goodwill"}

        as_marketer = client.post(f"/members/{member}/points/adjust", data=form)
        client.post("/logout", data={"csrf_token": form["csrf_token"]})
        signed_in(console, context, workspace, "admin")
        without_token = client.post(f"/members/{member}/points/adjust",
                                    data={"points": "50", "reason": "goodwill", "idempotency_key": "k-1"})

        assert as_marketer.status_code == 403 and without_token.status_code == 403
        assert ledger_kinds(context, workspace, member) == ["earn"]

    def test_ledger_pages_back(self, console: TestClient, context: Context, workspace: Workspace,
                               member: str) -> None:
        with context.store.transaction() as session:
            for n in range(20):
                points.adjust(session, workspace, member, points=1, reason=f"r{n}", idempotency_key=f"k{n}",
                              actor=Actor.cli())
        client = signed_in(console, context, workspace, "analyst")

        newest = client.get(f"/members/{member}").text
        older_link = re.search(r'href="([^"]+)#points" data-testid="ledger-older"', newest)

        assert len(texts_by_testid(newest, "ledger-row", "tr")) == 20
        assert older_link is not None
        older = client.get(older_link.group(1).replace("&amp;", "&")).text
        assert re.findall(r'data-testid="ledger-row" data-kind="(\w+)"', older) == ["earn"]
        assert 'data-testid="ledger-older"' not in older

    def test_a_person_outside_the_programme(self, console: TestClient, context: Context,
                                            workspace: Workspace) -> None:
        with context.store.transaction() as session:
            member_id = make_member(session, workspace.id)

        page = signed_in(console, context, workspace, "admin").get(f"/members/{member_id}")

        assert page.status_code == 200 and 'data-testid="points-not-enrolled"' in page.text
        assert 'data-testid="adjust-form"' not in page.text

