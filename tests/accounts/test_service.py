from __future__ import annotations

import pytest

from memberops.accounts import service as accounts
from memberops.accounts.errors import AuthenticationFailed, InvalidRole, UserExists, WeakPassword
from memberops.accounts.models import Workspace
from memberops.audit.service import Actor, recent
from memberops.runtime import Context
from tests.factories import PASSWORD, make_user


class TestPasswords:
    def test_argon2id_hash_verifies(self) -> None:
        hashed = accounts.hash_password("a long password")
        assert hashed.startswith("$argon2id$")
        assert accounts.verify_password(hashed, "a long password")
        assert not accounts.verify_password(hashed, "another password")
        assert not accounts.verify_password("garbage", "a long password")


class TestUsers:
    def test_create_and_log_in(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            make_user(session, workspace, role="marketer", email="Mia@Example.com")
        with context.store.transaction() as session:
            opened = accounts.log_in(session, email="mia@example.com", password=PASSWORD, hours=1)
        with context.store.read() as session:
            found = accounts.session_user(session, opened.token)
        assert found is not None and found[0].role == "marketer"

    @pytest.mark.parametrize("password", [PASSWORD + "x", ""])
    def test_wrong_password(self, context: Context, workspace: Workspace, password: str) -> None:
        with context.store.transaction() as session:
            make_user(session, workspace)
        with pytest.raises(AuthenticationFailed), context.store.transaction() as session:
            accounts.log_in(session, email="admin@example.com", password=password, hours=1)

    def test_logout_ends_the_session(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            make_user(session, workspace)
            opened = accounts.log_in(session, email="admin@example.com", password=PASSWORD, hours=1)
        with context.store.transaction() as session:
            accounts.log_out(session, opened.token)
        with context.store.read() as session:
            assert accounts.session_user(session, opened.token) is None

    def test_rules(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            make_user(session, workspace)
        for error, kwargs in [
            (UserExists, {"email": "ADMIN@example.com", "password": PASSWORD, "role": "admin"}),
            (WeakPassword, {"email": "b@example.com", "password": "short", "role": "admin"}),
            (InvalidRole, {"email": "c@example.com", "password": PASSWORD, "role": "root"}),
        ]:
            with pytest.raises(error), context.store.transaction() as session:
                accounts.create_user(session, workspace, actor=Actor.cli(), **kwargs)

    def test_changes_are_audited_without_pii(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            make_user(session, workspace, email="pii@example.com")
        with context.store.read() as session:
            entries = recent(session, workspace.id)
        assert entries[0].action == "user.create"
        assert "pii@example.com" not in str([(e.detail, e.target_id) for e in entries])
