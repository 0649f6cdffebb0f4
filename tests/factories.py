"""Factories for the foundation's objects, with readable defaults."""

from __future__ import annotations

from sqlalchemy.orm import Session

from memberops.accounts import service as accounts
from memberops.accounts.models import OperatorUser, Workspace
from memberops.audit.service import Actor

PASSWORD = "correct horse battery"


def make_user(session: Session, workspace: Workspace, *, role: str = "admin", email: str | None = None) -> OperatorUser:
    return accounts.create_user(
        session, workspace, email=email or f"{role}@example.com", password=PASSWORD, role=role, actor=Actor.cli()
    )


def make_key(session: Session, workspace: Workspace, *scopes: str, name: str = "test key") -> str:
    return accounts.create_api_key(session, workspace, name=name, scopes=list(scopes) or ["read"],
                                   actor=Actor.cli()).key
