"""The console shell: login, CSRF, roles, dashboard, API keys, logout — through the real app, on every store."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request

from memberops.accounts import service as accounts
from memberops.accounts.models import Workspace
from memberops.api.app import create_app
from memberops.audit import service as audit
from memberops.config import Settings
from memberops.identity.service import resolve_customer
from memberops.runtime import Context
from memberops.web import session as web_session
from tests import factories
from tests.console import csrf_in, log_in, text_of

WEB_DIR = Path(__file__).parents[2] / "src" / "memberops" / "web"
ADMIN_EMAIL = "admin@example.com"


# -- helpers ---------------------------------------------------------------------------------------


def users_count(context: Context, workspace: Workspace) -> int:
    with context.store.read() as session:
        return len(accounts.list_users(session, workspace.id))


@pytest.fixture
def client(context: Context, workspace: Workspace) -> Iterator[TestClient]:
    with TestClient(create_app(context)) as test_client:
        yield test_client


@pytest.fixture
def admin(context: Context, workspace: Workspace) -> str:
    with context.store.transaction() as session:
        return factories.make_user(session, workspace, role="admin", email=ADMIN_EMAIL).id


@pytest.fixture
def admin_client(client: TestClient, admin: str) -> TestClient:
    assert log_in(client, ADMIN_EMAIL).status_code == 303
    return client


def make_operator(context: Context, workspace: Workspace, role: str) -> str:
    email = f"{role}@example.com"
    with context.store.transaction() as session:
        factories.make_user(session, workspace, role=role, email=email)
    return email


# -- tests -----------------------------------------------------------------------------------------


class TestLogin:
    def test_success_sets_httponly_cookie_and_redirects_home(self, client: TestClient, admin: str) -> None:
        response = log_in(client, ADMIN_EMAIL)

        assert response.status_code == 303
        assert response.headers["location"] == "/"
        cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("memberops_session="))
        assert "HttpOnly" in cookie
        assert "samesite=lax" in cookie.lower()
        assert "Path=/" in cookie
        assert "Max-Age=43200" in cookie  # settings.session_hours = 12
        assert "Secure" not in cookie  # plain http and cookie_secure unset
        assert client.get("/").status_code == 200

    def test_login_is_audited(self, client: TestClient, context: Context, workspace: Workspace, admin: str) -> None:
        log_in(client, ADMIN_EMAIL)

        with context.store.read() as session:
            entries = audit.recent(session, workspace.id, 10)
        assert any(e.action == "user.login" and e.actor_type == "user" and e.actor_id == admin for e in entries)

    def test_wrong_password_is_401_without_cookie(self, client: TestClient, admin: str) -> None:
        response = log_in(client, ADMIN_EMAIL, password="not the password")

        assert response.status_code == 401
        assert text_of(response.text, "login-error") == "Wrong e-mail or password."
        assert "memberops_session" not in response.headers.get("set-cookie", "")
        assert ADMIN_EMAIL in response.text  # the e-mail is kept in the form …
        assert "not the password" not in response.text  # … the password never is

    def test_unknown_user_reads_the_same(self, client: TestClient, admin: str) -> None:
        response = log_in(client, "nobody@example.com")

        assert response.status_code == 401
        assert text_of(response.text, "login-error") == "Wrong e-mail or password."
        assert "memberops_session" not in response.headers.get("set-cookie", "")

    @pytest.mark.parametrize("path", ["/", "/admin/users", "/admin/keys", "/admin/audit"])
    def test_anonymous_is_sent_to_login(self, client: TestClient, path: str) -> None:
        response = client.get(path, follow_redirects=False)

        assert response.status_code == 303
        expected = "/login" if path == "/" else f"/login?next={path}"
        assert response.headers["location"] == expected

    def test_next_is_followed_after_login(self, client: TestClient, admin: str) -> None:
        response = log_in(client, ADMIN_EMAIL, next_path="/admin/keys")

        assert response.status_code == 303
        assert response.headers["location"] == "/admin/keys"

    def test_login_page_carries_next(self, client: TestClient) -> None:
        page = client.get("/login?next=/admin/audit")

        assert 'name="next" value="/admin/audit"' in page.text

    @pytest.mark.parametrize("unsafe", [
        "//evil.example", "https://evil.example/", "/\\evil.example", "evil.example", "javascript:alert(1)",
        "/\nSet-Cookie:x=y",
    ])
    def test_unsafe_next_goes_home(self, client: TestClient, admin: str, unsafe: str) -> None:
        response = log_in(client, ADMIN_EMAIL, next_path=unsafe)

        assert response.status_code == 303
        assert response.headers["location"] == "/"

    def test_signed_in_operator_skips_the_form(self, admin_client: TestClient) -> None:
        response = admin_client.get("/login?next=/admin/users", follow_redirects=False)

        assert response.status_code == 303
        assert response.headers["location"] == "/admin/users"

    def test_cookie_is_secure_over_https(self, context: Context, admin: str) -> None:
        with TestClient(create_app(context), base_url="https://testserver") as https_client:
            response = log_in(https_client, ADMIN_EMAIL)

        cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("memberops_session="))
        assert "Secure" in cookie

    @pytest.mark.parametrize(("configured", "scheme", "expected"), [
        (None, "http", False), (None, "https", True), (True, "http", True), (False, "https", False),
    ])
    def test_cookie_secure_setting_wins(self, settings: Settings, configured: bool | None, scheme: str,
                                        expected: bool) -> None:
        request = Request({"type": "http", "scheme": scheme, "path": "/", "headers": [], "query_string": b"",
                           "server": ("testserver", 443 if scheme == "https" else 80)})

        assert web_session.is_secure(request, settings.model_copy(update={"cookie_secure": configured})) is expected

    def test_security_headers(self, client: TestClient) -> None:
        response = client.get("/login")

        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["content-security-policy"].startswith("default-src 'self'")
        assert response.headers["referrer-policy"] == "same-origin"
        assert response.headers["cache-control"] == "no-store"


class TestCsrf:
    def test_login_without_token_is_403(self, client: TestClient, admin: str) -> None:
        client.get("/login")  # the browser holds the csrf cookie, but the form does not echo it

        response = client.post("/login", data={"email": ADMIN_EMAIL, "password": factories.PASSWORD},
                               follow_redirects=False)

        assert response.status_code == 403
        assert "memberops_session" not in response.headers.get("set-cookie", "")
        assert text_of(response.text, "login-error").startswith("This login form had expired")

    def test_login_without_cookie_is_403(self, context: Context, admin: str) -> None:
        """A cross-site form can copy a token value but cannot set our cookie."""
        with TestClient(create_app(context)) as first, TestClient(create_app(context)) as attacker:
            token = csrf_in(first.get("/login").text)
            response = attacker.post("/login", data={"email": ADMIN_EMAIL, "password": factories.PASSWORD,
                                                     "csrf_token": token}, follow_redirects=False)

        assert response.status_code == 403

    def test_login_with_forged_cookie_is_403(self, client: TestClient, admin: str) -> None:
        client.cookies.set("memberops_csrf", "forged")

        response = client.post("/login", data={"email": ADMIN_EMAIL, "password": factories.PASSWORD,
                                               "csrf_token": "forged"}, follow_redirects=False)

        assert response.status_code == 403

    @pytest.mark.parametrize("token", [None, "", "wrong-token"])
    def test_create_user_without_the_session_token_is_403(
        self, admin_client: TestClient, context: Context, workspace: Workspace, token: str | None
    ) -> None:
        before = users_count(context, workspace)
        data = {"email": "new@example.com", "password": factories.PASSWORD, "role": "analyst"}
        if token is not None:
            data["csrf_token"] = token

        response = admin_client.post("/admin/users", data=data, follow_redirects=False)

        assert response.status_code == 403
        assert text_of(response.text, "error-title") == "This form could not be accepted"
        assert users_count(context, workspace) == before

    def test_another_sessions_token_is_refused(
        self, admin_client: TestClient, context: Context, workspace: Workspace
    ) -> None:
        with TestClient(create_app(context)) as other:
            log_in(other, ADMIN_EMAIL)
            other_token = csrf_in(other.get("/admin/users").text)

        response = admin_client.post("/admin/users", data={
            "email": "new@example.com", "password": factories.PASSWORD, "role": "analyst",
            "csrf_token": other_token}, follow_redirects=False)

        assert response.status_code == 403

    def test_revoke_without_token_keeps_the_key(
        self, admin_client: TestClient, context: Context, workspace: Workspace
    ) -> None:
        with context.store.transaction() as session:
            key_id = accounts.create_api_key(session, workspace, name="pos", scopes=["read"],
                                             actor=audit.Actor.cli()).api_key.id

        response = admin_client.post(f"/admin/keys/{key_id}/revoke", data={"csrf_token": "nope"})

        assert response.status_code == 403
        with context.store.read() as session:
            assert all(k.is_active for k in accounts.list_api_keys(session, workspace.id))

    def test_every_form_carries_the_session_token(self, admin_client: TestClient) -> None:
        token = csrf_in(admin_client.get("/").text)
        for path in ("/", "/admin/users", "/admin/keys"):
            page = admin_client.get(path).text
            forms = re.findall(r'<form method="post".*?</form>', page, flags=re.S)
            assert forms, path
            for form in forms:
                assert f'name="csrf_token" value="{token}"' in form, (path, form[:80])


class TestRoles:
    @pytest.mark.parametrize("path", ["/admin/users", "/admin/keys", "/admin/audit"])
    @pytest.mark.parametrize("role", ["analyst", "marketer", "associate"])
    def test_non_admin_gets_403(
        self, client: TestClient, context: Context, workspace: Workspace, role: str, path: str
    ) -> None:
        log_in(client, make_operator(context, workspace, role))

        response = client.get(path)

        assert response.status_code == 403
        assert text_of(response.text, "error-title") == "Not for your role"

    @pytest.mark.parametrize("path", ["/admin/users", "/admin/keys", "/admin/audit"])
    def test_admin_gets_200(self, admin_client: TestClient, path: str) -> None:
        assert admin_client.get(path).status_code == 200

    def test_analyst_cannot_post_admin_forms(
        self, client: TestClient, context: Context, workspace: Workspace
    ) -> None:
        log_in(client, make_operator(context, workspace, "analyst"))
        token = csrf_in(client.get("/").text)  # a valid token of their own session

        response = client.post("/admin/users", data={
            "email": "sneaky@example.com", "password": factories.PASSWORD, "role": "admin", "csrf_token": token})

        assert response.status_code == 403
        assert users_count(context, workspace) == 1

    @pytest.mark.parametrize("role", ["admin", "marketer", "analyst", "associate"])
    def test_dashboard_for_every_role(
        self, client: TestClient, context: Context, workspace: Workspace, role: str
    ) -> None:
        email = make_operator(context, workspace, role)
        log_in(client, email)

        page = client.get("/")

        assert page.status_code == 200
        assert text_of(page.text, "user-email") == email
        assert text_of(page.text, "user-role") == role
        assert ('data-testid="nav-users"' in page.text) is (role == "admin")


class TestDashboard:
    CARDS = ("members", "enrolled-members", "identity-records", "orders", "events", "outbox-backlog")

    def test_counts_render(self, admin_client: TestClient) -> None:
        page = admin_client.get("/")

        assert page.status_code == 200
        for card in self.CARDS:
            assert text_of(page.text, f"count-{card}-value") == "0"

    def test_a_resolved_customer_counts(
        self, admin_client: TestClient, context: Context, workspace: Workspace
    ) -> None:
        with context.store.transaction() as session:
            resolve_customer(session, workspace, channel="web", source_id="c-1",
                             identifiers={"email": "ann@example.com"}, is_enrolled=True)

        page = admin_client.get("/").text

        assert text_of(page, "count-members-value") == "1"
        assert text_of(page, "count-enrolled-members-value") == "1"
        assert text_of(page, "count-identity-records-value") == "1"


class TestUsers:
    def test_create_user(self, admin_client: TestClient, context: Context, workspace: Workspace, admin: str) -> None:
        token = csrf_in(admin_client.get("/admin/users").text)

        response = admin_client.post("/admin/users", data={
            "email": "Marketer@Example.com", "password": factories.PASSWORD, "role": "marketer",
            "csrf_token": token}, follow_redirects=False)

        assert response.status_code == 303
        page = admin_client.get(response.headers["location"])
        assert text_of(page.text, "flash") == "Operator marketer@example.com created."
        assert page.text.count('data-testid="user-row"') == 2
        with context.store.read() as session:
            entries = audit.recent(session, workspace.id, 10)
        assert any(e.action == "user.create" and e.actor_type == "user" and e.actor_id == admin for e in entries)

    @pytest.mark.parametrize(("email", "password", "role", "status", "message"), [
        ("new@example.com", "short", "analyst", 422, "Passwords need at least 10 characters."),
        (ADMIN_EMAIL, factories.PASSWORD, "analyst", 409, "An operator with this e-mail already exists."),
        ("new@example.com", factories.PASSWORD, "owner", 422, "Unknown role 'owner'"),
        ("not-an-email", factories.PASSWORD, "analyst", 422, "Enter the operator's e-mail address."),
    ])
    def test_domain_errors_show_in_the_form(
        self, admin_client: TestClient, context: Context, workspace: Workspace,
        email: str, password: str, role: str, status: int, message: str,
    ) -> None:
        token = csrf_in(admin_client.get("/admin/users").text)

        response = admin_client.post("/admin/users", data={
            "email": email, "password": password, "role": role, "csrf_token": token})

        assert response.status_code == status
        assert text_of(response.text, "form-error").startswith(message)
        assert f'value="{email}"' in response.text
        assert users_count(context, workspace) == 1


class TestKeys:
    def _issue(self, client: TestClient, name: str = "POS Shanghai", scopes: tuple[str, ...] = ("read",)):
        token = csrf_in(client.get("/admin/keys").text)
        return client.post("/admin/keys", data={"name": name, "scopes": list(scopes), "csrf_token": token})

    def _key_in(self, html: str) -> str:
        found = re.search(r'value="(mo_[^"]+)"[^>]*data-testid="new-key"', html)
        assert found, "the new key is not on the page"
        return found.group(1)

    def test_create_shows_the_key_once_and_it_authenticates(self, admin_client: TestClient) -> None:
        response = self._issue(admin_client, scopes=("read", "ingest"))

        assert response.status_code == 201
        key = self._key_in(response.text)
        listing = admin_client.get("/admin/keys").text
        assert key not in listing  # never shown again …
        assert key.split("_")[1] in listing  # … only its public prefix
        me = admin_client.get("/api/v1/me", headers={"Authorization": f"Bearer {key}"})
        assert me.status_code == 200
        assert me.json()["key_name"] == "POS Shanghai"
        assert sorted(me.json()["scopes"]) == ["ingest", "read"]

    def test_creation_is_audited_as_the_operator(
        self, admin_client: TestClient, context: Context, workspace: Workspace, admin: str
    ) -> None:
        self._issue(admin_client)

        with context.store.read() as session:
            entries = audit.recent(session, workspace.id, 10)
        assert any(e.action == "api_key.create" and e.actor_id == admin for e in entries)
        page = admin_client.get("/admin/audit").text
        assert "api_key.create" in page
        assert ADMIN_EMAIL in page  # the actor shown by e-mail

    def test_revoke_makes_the_key_401(self, admin_client: TestClient) -> None:
        key = self._key_in(self._issue(admin_client).text)
        listing = admin_client.get("/admin/keys").text
        revoke_form = re.search(r'action="/admin/keys/([^/"]+)/revoke"', listing)
        assert revoke_form is not None
        key_id = revoke_form.group(1)

        response = admin_client.post(f"/admin/keys/{key_id}/revoke", data={"csrf_token": csrf_in(listing)},
                                     follow_redirects=False)

        assert response.status_code == 303
        assert 'data-testid="key-revoked"' in admin_client.get("/admin/keys").text
        assert admin_client.get("/api/v1/me", headers={"Authorization": f"Bearer {key}"}).status_code == 401

    def test_revoke_unknown_key_is_404(self, admin_client: TestClient) -> None:
        token = csrf_in(admin_client.get("/admin/keys").text)

        response = admin_client.post("/admin/keys/no-such-key/revoke", data={"csrf_token": token})

        assert response.status_code == 404

    @pytest.mark.parametrize(("name", "scopes", "message"), [
        ("POS", (), "Give at least one scope"),
        ("", ("read",), "Give the key a name."),
        ("POS", ("everything",), "Unknown scope 'everything'"),
    ])
    def test_invalid_form_is_422(self, admin_client: TestClient, name: str, scopes: tuple[str, ...],
                                 message: str) -> None:
        response = self._issue(admin_client, name=name, scopes=scopes)

        assert response.status_code == 422
        assert text_of(response.text, "form-error").startswith(message)
        assert 'data-testid="new-key"' not in response.text


class TestLogout:
    def test_logout_ends_the_session(self, admin_client: TestClient) -> None:
        old_cookie = admin_client.cookies.get("memberops_session")
        token = csrf_in(admin_client.get("/").text)

        response = admin_client.post("/logout", data={"csrf_token": token}, follow_redirects=False)

        assert response.status_code == 303
        assert response.headers["location"] == "/login"
        assert 'memberops_session=""' in response.headers["set-cookie"]
        assert admin_client.get("/", follow_redirects=False).status_code == 303
        # The stored session is gone too: replaying the old cookie does not get back in.
        admin_client.cookies.set("memberops_session", old_cookie)
        assert admin_client.get("/", follow_redirects=False).status_code == 303

    def test_logout_without_token_is_403(self, admin_client: TestClient) -> None:
        response = admin_client.post("/logout", data={}, follow_redirects=False)

        assert response.status_code == 403
        assert admin_client.get("/").status_code == 200


class TestShell:
    def test_stylesheet_is_served(self, client: TestClient) -> None:
        response = client.get("/static/console.css")

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/css")

    def test_no_asset_from_another_origin(self) -> None:
        for path in [*WEB_DIR.glob("templates/**/*.html"), *WEB_DIR.glob("static/*")]:
            text = path.read_text()
            assert not re.search(r"(src|href)=\"(https?:)?//", text), path
            assert "@import" not in text and "url(http" not in text, path

    def test_no_query_in_the_console(self) -> None:
        """Console pages call services; queries and commits belong to the domains and the request scope."""
        for path in WEB_DIR.glob("*.py"):
            source = path.read_text()
            assert "select(" not in source, path
            assert ".commit(" not in source, path
