"""The HTTP surface: health, OpenAPI, key authentication and scopes, problem+json errors, size limits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select

from memberops.accounts.models import Workspace
from memberops.api.app import API_PREFIX, api_routers, create_app
from memberops.runtime import Context
from tests.factories import make_key


@pytest.fixture
def client(context: Context) -> Iterator[TestClient]:
    with TestClient(create_app(context)) as client:
        yield client


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code and body["status"] == status and body["detail"]
    return body


class TestHealthAndDocs:
    def test_health(self, client: TestClient) -> None:
        assert client.get("/health").json()["status"] == "ok"

    def test_openapi_lists_the_api_and_its_problems(self, client: TestClient) -> None:
        spec = client.get("/openapi.json").json()
        assert "/api/v1/members" in spec["paths"]
        assert "409" in spec["paths"]["/api/v1/keys/{key_id}"]["delete"]["responses"] or \
            "404" in spec["paths"]["/api/v1/keys/{key_id}"]["delete"]["responses"]
        assert "401" in spec["paths"]["/api/v1/members"]["post"]["responses"]


class TestApiRoutes:
    """The API's routes are declared on the app itself (matched in one pass), not included as routers."""

    def test_same_api_as_the_routers_included(self, client: TestClient) -> None:
        included = FastAPI(title="memberops")
        for router in api_routers():
            included.include_router(router, prefix=API_PREFIX)
        served = client.get("/openapi.json").json()
        expected = included.openapi()
        assert list(expected["paths"]) == [path for path in served["paths"] if path.startswith(API_PREFIX)]
        assert {path: served["paths"][path] for path in expected["paths"]} == expected["paths"]
        assert served["components"]["schemas"].items() >= expected["components"]["schemas"].items()

    def test_every_api_route_is_a_route_of_the_app(self, client: TestClient) -> None:
        declared = sum(len(router.routes) for router in api_routers())
        served = [route for route in client.app.routes  # type: ignore[attr-defined]
                  if isinstance(route, APIRoute) and route.path.startswith(API_PREFIX)]
        assert len(served) == declared == len({(route.path, *sorted(route.methods or ())) for route in served})

    def test_a_fixed_path_is_matched_before_a_parameter(
        self, client: TestClient, context: Context, workspace: Workspace,
    ) -> None:
        with context.store.transaction() as session:
            key = make_key(session, workspace, "read")
        found = client.get("/api/v1/members/search", params={"q": "+8613900000000"}, headers=_auth(key))
        assert found.status_code == 200 and found.json()["items"] == []  # not the member called "search"


class TestAuthentication:
    def test_missing_key(self, client: TestClient, workspace: Workspace) -> None:
        response = client.get("/api/v1/me")
        _assert_problem(response, 401, "authentication_failed")
        assert response.headers["www-authenticate"] == "Bearer"

    @pytest.mark.parametrize("key", ["nonsense", "mo_abc_def", "mo_000000000000_wrongsecret"])
    def test_wrong_key(self, client: TestClient, workspace: Workspace, key: str) -> None:
        _assert_problem(client.get("/api/v1/me", headers=_auth(key)), 401, "authentication_failed")

    def test_right_key_with_a_tampered_secret(self, client: TestClient, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            key = make_key(session, workspace, "read")
        _assert_problem(client.get("/api/v1/me", headers=_auth(key[:-2] + "xx")), 401, "authentication_failed")

    def test_valid_key(self, client: TestClient, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            key = make_key(session, workspace, "ingest", "read", name="pos")
        body = client.get("/api/v1/me", headers=_auth(key)).json()
        assert body == {"workspace": "default", "workspace_name": "Test brand", "key_name": "pos",
                        "scopes": ["ingest", "read"]}

    def test_key_is_stored_hashed(self, context: Context, workspace: Workspace) -> None:
        from memberops.accounts.models import ApiKey

        with context.store.transaction() as session:
            key = make_key(session, workspace, "read")
        with context.store.read() as session:
            stored = session.scalars(select(ApiKey)).one()
        assert key.split("_", 2)[2] not in (stored.secret_hash, stored.prefix)


class TestScopes:
    def test_missing_scope_is_403(self, client: TestClient, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            key = make_key(session, workspace, "read")
        body = _assert_problem(client.post("/api/v1/members", json={"channel": "pos", "source_id": "1"},
                                           headers=_auth(key)), 403, "missing_scope")
        assert body["facts"] == {"required": "loyalty", "granted": ["read"]}  # enrolment: loyalty (or ingest)

    def test_admin_scope_grants_everything(self, client: TestClient, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            key = make_key(session, workspace, "admin")
        assert client.get("/api/v1/members", headers=_auth(key)).status_code == 200
        created = client.post("/api/v1/keys", json={"name": "pos", "scopes": ["loyalty"]}, headers=_auth(key))
        assert created.status_code == 201
        new_key = created.json()["key"]
        assert client.get("/api/v1/me", headers=_auth(new_key)).json()["scopes"] == ["loyalty"]

    def test_revoked_key_is_rejected(self, client: TestClient, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            admin = make_key(session, workspace, "admin")
        issued = client.post("/api/v1/keys", json={"name": "tmp", "scopes": ["read"]}, headers=_auth(admin)).json()
        assert client.delete(f"/api/v1/keys/{issued['id']}", headers=_auth(admin)).json()["revoked_at"]
        _assert_problem(client.get("/api/v1/me", headers=_auth(issued["key"])), 401, "authentication_failed")

    def test_a_key_revoked_after_use_is_refused_on_the_write_path(
        self, client: TestClient, context: Context, workspace: Workspace,
    ) -> None:
        with context.store.transaction() as session:
            admin = make_key(session, workspace, "admin")
        issued = client.post("/api/v1/keys", json={"name": "till", "scopes": ["ingest"]}, headers=_auth(admin)).json()
        order = {"channel": "pos", "order_id": "o-1", "customer_key": "c-1", "ordered_at": "2026-03-01T10:00:00Z",
                 "paid_amount": "10.00"}
        assert client.post("/api/v1/orders", json=order, headers=_auth(issued["key"])).status_code == 201
        client.delete(f"/api/v1/keys/{issued['id']}", headers=_auth(admin))
        refused = client.post("/api/v1/orders", json={**order, "order_id": "o-2"}, headers=_auth(issued["key"]))
        _assert_problem(refused, 401, "authentication_failed")

    @pytest.mark.parametrize("request_kind", ["read", "write"])
    def test_last_use_is_recorded(
        self, client: TestClient, context: Context, workspace: Workspace, request_kind: str,
    ) -> None:
        from memberops.accounts.models import ApiKey

        with context.store.transaction() as session:
            key = make_key(session, workspace, "read", "ingest")
        if request_kind == "read":
            assert client.get("/api/v1/me", headers=_auth(key)).status_code == 200
        else:
            event = {"channel": "web", "event_id": "e-1", "type": "page_view", "anonymous_id": "a-1",
                     "occurred_at": "2026-03-01T10:00:00Z"}
            assert client.post("/api/v1/events", json=event, headers=_auth(key)).status_code == 201
        with context.store.read() as session:
            used = session.scalars(select(ApiKey.last_used_at)).one()
        assert used is not None

    def test_key_changes_are_audited(self, client: TestClient, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            admin = make_key(session, workspace, "admin")
        client.post("/api/v1/keys", json={"name": "tmp", "scopes": ["read"]}, headers=_auth(admin))
        actions = [e["action"] for e in client.get("/api/v1/audit", headers=_auth(admin)).json()]
        assert actions[:2] == ["api_key.create", "api_key.create"]


class TestErrors:
    def test_validation_names_each_bad_field(self, client: TestClient, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            key = make_key(session, workspace, "ingest")
        body = _assert_problem(
            client.post("/api/v1/members", json={"channel": "Bad Channel!", "colour": "red"}, headers=_auth(key)),
            422, "validation_error",
        )
        fields = {e["field"] for e in body["errors"]}
        assert {"channel", "colour"} <= fields  # source_id is optional since enrolment finds people by identifiers

    def test_invalid_scope_is_422(self, client: TestClient, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            admin = make_key(session, workspace, "admin")
        _assert_problem(client.post("/api/v1/keys", json={"name": "x", "scopes": ["root"]}, headers=_auth(admin)),
                        422, "invalid_scope")

    def test_unknown_member_is_404(self, client: TestClient, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            key = make_key(session, workspace, "read")
        _assert_problem(client.get("/api/v1/members/nope", headers=_auth(key)), 404, "member_not_found")

    def test_unknown_route_is_a_problem_too(self, client: TestClient) -> None:
        _assert_problem(client.get("/api/v1/nothing-here"), 404, "not_found")

    def test_request_too_large(self, context: Context, workspace: Workspace) -> None:
        small = Context(settings=context.settings.model_copy(update={"max_request_bytes": 1000}),
                        store=context.store)
        with context.store.transaction() as session:
            key = make_key(session, workspace, "ingest")
        with TestClient(create_app(small)) as client:
            body = {"channel": "pos", "source_id": "x" * 5000}
            _assert_problem(client.post("/api/v1/members", json=body, headers=_auth(key)), 413, "request_too_large")

            def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds on the stream too
                yield b'{"channel": "pos", "source_id": "'
                for _ in range(10):
                    yield b"y" * 500
                yield b'"}'

            response = client.post("/api/v1/members", content=chunks(),
                                   headers={**_auth(key), "content-type": "application/json"})
            _assert_problem(response, 413, "request_too_large")
