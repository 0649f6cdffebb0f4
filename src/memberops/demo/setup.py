"""Setting up the demo workspace and its operator login."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass

from sqlalchemy import select

from memberops.accounts import service as accounts
from memberops.accounts.models import OperatorUser
from memberops.audit.service import Actor
from memberops.runtime import Context

DEMO_EMAIL = "demo@memberops.local"
DEMO_WORKSPACE = "default"


@dataclass(frozen=True)
class DemoLogin:
    email: str
    password: str


def ensure_demo_operator(context: Context) -> DemoLogin:
    """The demo admin's login; created on first run with a random password kept (0600) in the data dir."""
    password_file = context.settings.data_dir / "demo-login.txt"
    with context.store.transaction() as session:
        workspace = accounts.ensure_workspace(session, DEMO_WORKSPACE, name="Demo brand")
        exists = session.scalar(select(OperatorUser.id).where(OperatorUser.email == DEMO_EMAIL)) is not None
        if exists and password_file.exists():
            return DemoLogin(DEMO_EMAIL, password_file.read_text().strip())
        password = secrets.token_urlsafe(12)
        if exists:
            user = session.scalar(select(OperatorUser).where(OperatorUser.email == DEMO_EMAIL))
            assert user is not None
            user.password_hash = accounts.hash_password(password)
        else:
            accounts.create_user(session, workspace, email=DEMO_EMAIL, password=password, role="admin",
                                 actor=Actor.system(), display_name="Demo admin")
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password)
    return DemoLogin(DEMO_EMAIL, password)
