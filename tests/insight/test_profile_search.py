"""Member search (``GET /api/v1/members/search``) by each kind of key, on every state store; how a query
is read; and that the query — a phone, an e-mail — never reaches the server's log."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from memberops.accounts.models import Workspace
from memberops.identity.search import InvalidSearch, display_name, search_terms
from memberops.runtime import Context
from tests.insight import test_profile as base
from tests.insight.test_profile import import_customers, resolve

# the profile tests' brand and clients, shared (a fixture is found by its name in the module)
brand, client, keys = base.brand, base.client, base.keys

Headers = dict[str, dict[str, str]]


class TestSearchTerms:
    @pytest.mark.parametrize(("query", "phone"), [
        ("138 0013 8001", "+8613800138001"), ("+86 138-0013-8001", "+8613800138001"),
        ("0086 13800138001", "+8613800138001"), ("+44 20 7946 0958", "+442079460958"), ("12345", None),
    ])
    def test_phones_read_in_the_default_region(self, query: str, phone: str | None) -> None:
        assert search_terms(query).phone == phone

    def test_phone_in_another_region(self) -> None:
        assert search_terms("020 7946 0958", region="GB").phone == "+442079460958"

    def test_email_is_normalised_and_not_a_name(self) -> None:
        terms = search_terms("  Ana@Example.COM ")
        assert (terms.email, terms.name, terms.phone) == ("ana@example.com", None, None)

    def test_member_number_also_tried_upper_case(self) -> None:
        assert search_terms("ls001").identifiers == [("member_card_no", "LS001"), ("member_card_no", "ls001")]

    @pytest.mark.parametrize(("names", "shown"), [
        (("Ana Lima", "Ana", "Lima"), "Ana Lima"), ((None, "芳", "王"), "王芳"), ((None, "Bo", "Chen"), "Bo Chen"),
        ((None, None, "王"), "王"), ((None, None, None), None),
    ])
    def test_display_name(self, names: tuple[str | None, str | None, str | None], shown: str | None) -> None:
        assert display_name(*names) == shown

    def test_words_are_a_name(self) -> None:
        terms = search_terms("  Ana   LIMA ")
        assert (terms.name, terms.phone, terms.email) == ("ana lima", None, None)

    @pytest.mark.parametrize("query", ["", "   ", "138" * 70])
    def test_empty_or_too_long_is_refused_without_repeating_it(self, query: str) -> None:
        with pytest.raises(InvalidSearch) as refused:
            search_terms(query)
        assert "138" not in refused.value.message


def found(client: TestClient, headers: dict[str, str], query: str) -> list[tuple[str, str]]:
    response = client.get("/api/v1/members/search", params={"q": query}, headers=headers)
    assert response.status_code == 200, response.text
    return [(item["member_id"], item["matched_on"]) for item in response.json()["items"]]


class TestSearchApi:
    @pytest.mark.parametrize(("query", "how"), [
        ("138 0013 8001", "phone"), ("+86 138-0013-8001", "phone"), ("ANA@example.com", "email"),
        ("LS001", "member_card_no"), ("ls001", "member_card_no"), ("Ana Lima", "name"), ("lim", "name"),
    ])
    def test_each_key_finds_the_member(self, client: TestClient, keys: Headers, brand: dict[str, str],
                                       query: str, how: str) -> None:
        assert found(client, keys["read"], query) == [(brand["ana"], how)]

    def test_member_id(self, client: TestClient, keys: Headers, brand: dict[str, str]) -> None:
        assert found(client, keys["read"], brand["bo"]) == [(brand["bo"], "member_id")]

    def test_result_carries_the_golden_record(self, client: TestClient, keys: Headers, brand: dict[str, str]) -> None:
        item = client.get("/api/v1/members/search", params={"q": "13900139000"}, headers=keys["read"]).json()["items"][0]

        assert item == {"member_id": brand["bo"], "matched_on": "phone", "full_name": "Bo Chen",
                        "phone": "+8613900139000", "email": "bo@example.com", "city": None, "is_enrolled": False}

    def test_name_prefix_ranks_before_a_match_inside(self, client: TestClient, context: Context,
                                                     workspace: Workspace, keys: Headers, brand: dict[str, str],
                                                     tmp_path: Path) -> None:
        import_customers(context, workspace, tmp_path, "more.csv", "r3,,,,Amazon Wu,Amazon,Wu\nr4,,,,Zoe Li,Zoe,Li\n")
        members = resolve(context, workspace)

        assert found(client, keys["read"], "ZO") == [(members["crm/r4"], "name"), (members["crm/r3"], "name")]

    def test_no_match(self, client: TestClient, keys: Headers, brand: dict[str, str]) -> None:
        assert found(client, keys["read"], "13700137000") == []
        assert found(client, keys["read"], "nobody") == []

    def test_member_posted_live_is_found_before_any_resolution(self, client: TestClient, keys: Headers,
                                                                brand: dict[str, str]) -> None:
        posted = client.post("/api/v1/customers", headers=keys["ingest"], json={
            "channel": "web", "source_id": "w9", "phone": "186 0000 1234", "email": "Cy@Example.com"})
        assert posted.status_code == 201
        member_id = posted.json()["member_id"]

        assert found(client, keys["read"], "18600001234") == [(member_id, "phone")]
        assert found(client, keys["read"], "cy@example.com") == [(member_id, "email")]

    def test_merged_members_are_found_as_their_survivor(self, client: TestClient, context: Context,
                                                        workspace: Workspace, keys: Headers, brand: dict[str, str],
                                                        tmp_path: Path) -> None:
        import_customers(context, workspace, tmp_path, "web.csv", "w1,13800138001,bo@example.com,,,,\n", channel="web")
        survivor = resolve(context, workspace)["crm/r1"]
        absorbed = ({brand["ana"], brand["bo"]} - {survivor}).pop()

        assert found(client, keys["read"], "bo@example.com") == [(survivor, "email")]
        assert found(client, keys["read"], absorbed) == [(survivor, "member_id")]

    def test_empty_query_is_a_problem_without_the_query(self, client: TestClient, keys: Headers) -> None:
        response = client.get("/api/v1/members/search", params={"q": "  "}, headers=keys["read"])

        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "invalid_search"

    def test_needs_the_read_scope(self, client: TestClient, keys: Headers) -> None:
        response = client.get("/api/v1/members/search", params={"q": "13800138001"}, headers=keys["ingest"])

        assert response.status_code == 403 and response.json()["code"] == "missing_scope"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_query_never_reaches_the_server_log(tmp_path: Path) -> None:
    """``memberops serve`` as an operator runs it: a search by phone and by e-mail, over the API and in the
    console, leaves the path in the access log and neither value anywhere in the log."""
    env = {**os.environ, "MEMBEROPS_DATA_DIR": str(tmp_path), "MEMBEROPS_SECRET_KEY": "log-test-key"}
    cli = [sys.executable, "-m", "memberops.cli"]
    subprocess.run([*cli, "init"], env=env, cwd=tmp_path, check=True, capture_output=True, timeout=120)
    created = subprocess.run([*cli, "keys", "create", "--scope", "read"], env=env, cwd=tmp_path, check=True,
                             capture_output=True, text=True, timeout=120)
    key = created.stdout.strip().splitlines()[-1].split()[-1]
    port = _free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log_file:
        server = subprocess.Popen([*cli, "serve", "--host", "127.0.0.1", "--port", str(port), "--no-jobs"],
                                  env=env, cwd=tmp_path, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"{base}/health", timeout=2):
                        break
                except (urllib.error.URLError, ConnectionError):
                    assert time.monotonic() < deadline and server.poll() is None, log_path.read_text()
                    time.sleep(0.2)
            for query in ("13800138001", "secret.person%40example.com"):
                request = urllib.request.Request(f"{base}/api/v1/members/search?q={query}",
                                                 headers={"Authorization": f"Bearer {key}"})
                with urllib.request.urlopen(request, timeout=30) as response:
                    assert response.status == 200
                # the console redirects an anonymous visitor to the login page, query and all
                urllib.request.urlopen(f"{base}/members?q={query}", timeout=30).close()
        finally:
            server.terminate()
            server.wait(timeout=20)
    log = log_path.read_text()
    assert "GET /api/v1/members/search?…" in log and "GET /members?…" in log
    assert "13800138001" not in log
    assert "secret.person" not in log
