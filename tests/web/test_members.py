"""Console member pages through the real app, on every store: search, the profile and its timeline,
merged ids, roles and masked contact details."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pyarrow as pa
from fastapi.testclient import TestClient

from memberops.accounts.models import Workspace
from memberops.insight import service as insight
from memberops.runtime import Context
from tests.console import signed_in, texts_by_testid
from tests.insight import test_profile as profile_tests

brand = profile_tests.brand  # Ana (crm r1, pos p1) and Bo, with Ana's orders, refund and events in the lake


class TestSearchPage:
    def test_anonymous_is_sent_to_login(self, console: TestClient) -> None:
        response = console.get("/members", follow_redirects=False)

        assert response.status_code == 303 and response.headers["location"] == "/login?next=/members"

    def test_navigation_links_to_members(self, console: TestClient, context: Context, workspace: Workspace) -> None:
        page = signed_in(console, context, workspace, "associate").get("/")

        assert 'href="/members"' in page.text and 'data-testid="nav-members"' in page.text

    def test_search_by_phone_links_to_the_profile(self, console: TestClient, context: Context, workspace: Workspace,
                                                  brand: dict[str, str]) -> None:
        page = signed_in(console, context, workspace, "marketer").get("/members", params={"q": "138 0013 8001"})

        assert page.status_code == 200
        assert texts_by_testid(page.text, "member-result-link") == ["Ana Lima"]
        assert f'href="/members/{brand["ana"]}"' in page.text
        assert "+8613800138001" in page.text  # a marketer sees contact details

    def test_analyst_sees_contact_details_masked(self, console: TestClient, context: Context, workspace: Workspace,
                                                 brand: dict[str, str]) -> None:
        page = signed_in(console, context, workspace, "analyst").get("/members", params={"q": "Ana"})

        assert texts_by_testid(page.text, "member-result-link") == ["Ana Lima"]
        assert "+8613800138001" not in page.text and "ana@example.com" not in page.text
        assert "+86138****8001" in page.text and "a***@example.com" in page.text

    def test_nothing_found_says_so(self, console: TestClient, context: Context, workspace: Workspace,
                                   brand: dict[str, str]) -> None:
        page = signed_in(console, context, workspace, "admin").get("/members", params={"q": "nobody at all"})

        assert page.status_code == 200 and 'data-testid="member-results-empty"' in page.text

    def test_too_long_a_query_is_explained(self, console: TestClient, context: Context, workspace: Workspace) -> None:
        page = signed_in(console, context, workspace, "admin").get("/members", params={"q": "a" * 300})

        assert page.status_code == 422
        assert texts_by_testid(page.text, "member-search-error") == ["A search is at most 200 characters."]


class TestProfilePage:
    def test_header_identities_golden_record_and_timeline(self, console: TestClient, context: Context,
                                                          workspace: Workspace, brand: dict[str, str]) -> None:
        page = signed_in(console, context, workspace, "admin").get(f"/members/{brand['ana']}")

        assert page.status_code == 200
        assert texts_by_testid(page.text, "member-name") == ["Ana Lima"]
        assert texts_by_testid(page.text, "member-id") == [brand["ana"]]
        assert sorted(texts_by_testid(page.text, "identity", "li")) == ["crm r1", "pos p1"]
        assert texts_by_testid(page.text, "golden-phone") == ["+8613800138001"]
        kinds = re.findall(r'data-testid="timeline-entry" data-kind="(\w+)"', page.text)
        assert kinds == ["refund", "order", "event", "order"]  # newest first
        assert "Order o2 · 50.00 CNY" in page.text and "Refund 30.00 on order o1" in page.text
        assert 'data-testid="traits-missing"' in page.text  # before `memberops insight compute`

    def test_analyst_sees_the_golden_record_masked(self, console: TestClient, context: Context, workspace: Workspace,
                                                   brand: dict[str, str]) -> None:
        page = signed_in(console, context, workspace, "analyst").get(f"/members/{brand['ana']}")

        assert texts_by_testid(page.text, "golden-phone") == ["+86138****8001"]
        assert "ana@example.com" not in page.text and 'data-testid="contact-masked"' in page.text

    def test_absorbed_id_redirects_to_the_survivor(self, console: TestClient, context: Context, workspace: Workspace,
                                                   brand: dict[str, str], tmp_path: object) -> None:
        from pathlib import Path

        profile_tests.import_customers(context, workspace, Path(str(tmp_path)), "web.csv",
                                       "w1,13800138001,bo@example.com,,,,\n", channel="web")
        survivor = profile_tests.resolve(context, workspace)["crm/r1"]
        absorbed = ({brand["ana"], brand["bo"]} - {survivor}).pop()
        client = signed_in(console, context, workspace, "associate")

        response = client.get(f"/members/{absorbed}", follow_redirects=False)

        assert response.status_code == 303
        assert response.headers["location"] == f"/members/{survivor}?merged_from={absorbed}"
        page = client.get(response.headers["location"])
        assert 'data-testid="merged-notice"' in page.text
        assert re.findall(r'data-kind="identity"', page.text)  # the merge is on the timeline

    def test_traits_say_the_moment_they_describe_and_when_they_were_computed(
            self, console: TestClient, context: Context, workspace: Workspace, brand: dict[str, str]) -> None:
        as_of = datetime(2026, 1, 1, tzinfo=UTC)  # `insight compute --as-of 2026-01-01`, run months later
        computed = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
        traits = pa.table({"member_id": [brand["ana"]],
                           **{name: [{"as_of": as_of, "orders": 2, "aipl_stage": "purchased"}.get(name)]
                              for name in insight.SERVING_TRAITS},
                           "tags": pa.array([[]], pa.list_(pa.string()))})
        with context.store.transaction() as session:
            insight.save_serving_traits(session, workspace.id, traits, computed)
            session.get(Workspace, workspace.id).timezone = "Asia/Shanghai"  # type: ignore[union-attr]

        page = signed_in(console, context, workspace, "analyst").get(f"/members/{brand['ana']}")

        assert texts_by_testid(page.text, "traits-as-of") == ["As of 2026-01-01 08:00"]  # in the brand's zone
        assert texts_by_testid(page.text, "traits-computed-at") == ["(computed 2026-03-02 17:30)"]
        assert texts_by_testid(page.text, "trait-aipl_stage") == ["purchased"]

    def test_unknown_member_is_a_404_page(self, console: TestClient, context: Context, workspace: Workspace) -> None:
        page = signed_in(console, context, workspace, "admin").get("/members/no-such-member")

        assert page.status_code == 404 and "No such member" in page.text


class TestReviewPageLinks:
    def test_each_record_links_to_its_member(self, console: TestClient, context: Context, workspace: Workspace,
                                             brand: dict[str, str]) -> None:
        from memberops.identity import review

        with context.store.transaction() as session:
            review.queue_pairs(session, workspace.id, "run-1", [
                {"channel_a": "crm", "source_id_a": "r1", "channel_b": "crm", "source_id_b": "r2",
                 "match_probability": 0.8}])

        page = signed_in(console, context, workspace, "analyst").get("/identity/review")

        links = re.findall(r'href="/members/([^"]+)"[^>]*data-testid="review-member-link"', page.text)
        assert links == [brand["ana"], brand["bo"]]

    def test_analyst_sees_contact_details_masked(self, console: TestClient, context: Context, workspace: Workspace,
                                                 brand: dict[str, str]) -> None:
        from memberops.identity import review

        with context.store.transaction() as session:
            review.queue_pairs(session, workspace.id, "run-1", [
                {"channel_a": "crm", "source_id_a": "r1", "channel_b": "crm", "source_id_b": "r2",
                 "match_probability": 0.8}])

        analyst = signed_in(console, context, workspace, "analyst").get("/identity/review").text
        assert "+86138****8001" in analyst and "a***@example.com" in analyst  # as the profile masks them
        assert "8613800138001" not in analyst and "13900139000" not in analyst and "ana@example.com" not in analyst
        assert "Ana Lima" in analyst  # names are what the analyst compares

        console.cookies.clear()
        marketer = signed_in(console, context, workspace, "marketer").get("/identity/review").text
        assert "+8613800138001" in marketer and "ana@example.com" in marketer
