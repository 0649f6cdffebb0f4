"""Workspaces, operators and API keys: creating them and checking who is calling.

Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106's second recommended setting).
API keys are random 256-bit secrets, so a single SHA-256 is enough to store them safely and lets a
request be checked in microseconds; the public prefix finds the row without a scan.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from memberops.accounts.errors import (
    ApiKeyNotFound,
    AuthenticationFailed,
    InvalidRole,
    InvalidScope,
    UserExists,
    WeakPassword,
    WorkspaceNotFound,
)
from memberops.accounts.models import ApiKey, OperatorSession, OperatorUser, Workspace
from memberops.audit.service import Actor, record
from memberops.db.base import utcnow

DEFAULT_WORKSPACE_SLUG = "default"
KEY_PREFIX = "mo"
MIN_PASSWORD_LENGTH = 10


class Role(StrEnum):
    """Console roles, from most to least powerful."""

    admin = "admin"  # everything, including users, keys and settings
    marketer = "marketer"  # segments, campaigns, journeys, loyalty configuration
    analyst = "analyst"  # reads everything, changes nothing operational
    associate = "associate"  # a store associate: their own customers and tasks


class Scope(StrEnum):
    """What an API key may do."""

    ingest = "ingest"  # post customers, orders, refunds, events
    loyalty = "loyalty"  # enrol, earn, redeem, coupons — the POS surface
    read = "read"  # read members, traits, segments, reports
    engage = "engage"  # campaigns, journeys, sends
    admin = "admin"  # everything, including keys


_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- workspaces -------------------------------------------------------------------------------------


def ensure_workspace(
    session: Session, slug: str = DEFAULT_WORKSPACE_SLUG, name: str = "My brand", timezone: str = "UTC",
    currency: str = "CNY",
) -> Workspace:
    """The workspace ``slug``, created if it does not exist yet."""
    workspace = session.scalar(select(Workspace).where(Workspace.slug == slug))
    if workspace is None:
        workspace = Workspace(slug=slug, name=name, timezone=timezone, currency=currency)
        session.add(workspace)
        session.flush()
        record(session, Actor.system(), "workspace.create", workspace_id=workspace.id,
               target_type="workspace", target_id=workspace.id, detail={"slug": slug})
    return workspace


def get_workspace(session: Session, slug: str) -> Workspace:
    workspace = session.scalar(select(Workspace).where(Workspace.slug == slug))
    if workspace is None:
        raise WorkspaceNotFound(f"no workspace {slug!r}; run `memberops init` first", slug=slug)
    return workspace


def list_workspaces(session: Session) -> Sequence[Workspace]:
    return session.scalars(select(Workspace).order_by(Workspace.created_at)).all()


# -- operators --------------------------------------------------------------------------------------


def create_user(
    session: Session, workspace: Workspace, *, email: str, password: str, role: str, actor: Actor,
    display_name: str = "",
) -> OperatorUser:
    """A new console operator. E-mails are unique (case-insensitive); passwords have a minimum length."""
    if role not in Role.__members__:
        raise InvalidRole(f"unknown role {role!r}; accepted: {', '.join(Role)}", role=role)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"passwords need at least {MIN_PASSWORD_LENGTH} characters")
    email = email.strip().lower()
    if session.scalar(select(OperatorUser.id).where(OperatorUser.email == email)):
        raise UserExists("an operator with this e-mail already exists")
    user = OperatorUser(
        workspace_id=workspace.id, email=email, password_hash=hash_password(password), role=role,
        display_name=display_name or email.split("@")[0],
    )
    session.add(user)
    session.flush()
    record(session, actor, "user.create", workspace_id=workspace.id, target_type="user", target_id=user.id,
           detail={"role": role})
    return user


def list_users(session: Session, workspace_id: str) -> Sequence[OperatorUser]:
    return session.scalars(
        select(OperatorUser).where(OperatorUser.workspace_id == workspace_id).order_by(OperatorUser.created_at)
    ).all()


@dataclass(frozen=True)
class NewSession:
    token: str  # goes in the cookie; only its hash is stored
    session: OperatorSession


def log_in(session: Session, *, email: str, password: str, hours: int) -> NewSession:
    """Check an operator's password and open a console session. Any failure is the same failure."""
    user = session.scalar(select(OperatorUser).where(OperatorUser.email == email.strip().lower()))
    if user is None:
        hash_password(password)  # spend the same time as a real check: no user enumeration by timing
        raise AuthenticationFailed("wrong e-mail or password")
    if not verify_password(user.password_hash, password) or not user.is_active:
        raise AuthenticationFailed("wrong e-mail or password")
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    token = secrets.token_urlsafe(32)
    operator_session = OperatorSession(
        user_id=user.id, token_hash=_sha256(token), csrf_token=secrets.token_urlsafe(32),
        expires_at=utcnow() + timedelta(hours=hours),
    )
    user.last_login_at = utcnow()
    session.add(operator_session)
    session.flush()
    record(session, Actor("user", user.id), "user.login", workspace_id=user.workspace_id,
           target_type="user", target_id=user.id)
    return NewSession(token, operator_session)


def session_user(session: Session, token: str) -> tuple[OperatorUser, OperatorSession] | None:
    """The operator behind a console cookie, if the session exists, is unexpired and the user active."""
    found = session.execute(
        select(OperatorUser, OperatorSession)
        .join(OperatorSession, OperatorSession.user_id == OperatorUser.id)
        .where(OperatorSession.token_hash == _sha256(token))
    ).first()
    if found is None:
        return None
    user, operator_session = found
    if operator_session.expires_at <= utcnow() or not user.is_active:
        return None
    return user, operator_session


def log_out(session: Session, token: str) -> None:
    operator_session = session.scalar(select(OperatorSession).where(OperatorSession.token_hash == _sha256(token)))
    if operator_session is not None:
        session.delete(operator_session)


# -- API keys ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedKey:
    key: str  # the full secret, shown once
    api_key: ApiKey


def parse_scopes(scopes: Sequence[str]) -> list[str]:
    parsed: list[str] = []
    for scope in scopes:
        for part in scope.split(","):
            part = part.strip()
            if not part:
                continue
            if part not in Scope.__members__:
                raise InvalidScope(f"unknown scope {part!r}; accepted: {', '.join(Scope)}", scope=part)
            if part not in parsed:
                parsed.append(part)
    if not parsed:
        raise InvalidScope(f"give at least one scope; accepted: {', '.join(Scope)}")
    return parsed


def create_api_key(
    session: Session, workspace: Workspace, *, name: str, scopes: Sequence[str], actor: Actor
) -> IssuedKey:
    """A new API key ``mo_<prefix>_<secret>``. The caller shows ``key`` once; it cannot be recovered."""
    granted = parse_scopes(scopes)
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    api_key = ApiKey(
        workspace_id=workspace.id, name=name, prefix=prefix, secret_hash=_sha256(secret), scopes=granted,
        created_by=f"{actor.type}:{actor.id}",
    )
    session.add(api_key)
    session.flush()
    record(session, actor, "api_key.create", workspace_id=workspace.id, target_type="api_key",
           target_id=api_key.id, detail={"name": name, "scopes": granted, "prefix": prefix})
    return IssuedKey(f"{KEY_PREFIX}_{prefix}_{secret}", api_key)


@dataclass(frozen=True, slots=True)
class KeyInUse:
    """What a request needs of the API key it was made with: read with it, on every request, never kept
    across requests (a key revoked or narrowed is refused on the very next call)."""

    id: str
    name: str
    scopes: tuple[str, ...]
    last_used_at: datetime | None


# Every API request runs this: one prebuilt statement that finds the key by its prefix and loads its workspace
# with it. The key's columns are read as plain values, not as an ``ApiKey`` (a request never changes its key,
# and building a mapped object for it cost more than the round trip); the workspace is mapped, as the
# services it is handed to expect, and stays in the session for them.
_KEYS = ApiKey.__table__.c
_KEY_WITH_WORKSPACE = (select(Workspace, _KEYS.id, _KEYS.name, _KEYS.scopes, _KEYS.last_used_at, _KEYS.secret_hash,
                              _KEYS.revoked_at)
                       .join_from(Workspace, ApiKey.__table__, Workspace.id == _KEYS.workspace_id)
                       .where(_KEYS.prefix == bindparam("prefix")))


def authenticate_api_key(session: Session, key: str) -> tuple[KeyInUse, Workspace]:
    """The active key matching ``key`` and its workspace, read in one round trip; :class:`AuthenticationFailed`
    for anything else. (The workspace is returned rather than left in the session: the session holds the
    objects it loaded weakly, so one nobody refers to is gone by the time it is asked for.)"""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        raise AuthenticationFailed("malformed API key")
    found = session.execute(_KEY_WITH_WORKSPACE, {"prefix": parts[1]}).first()
    if found is None or not hmac.compare_digest(found.secret_hash, _sha256(parts[2])):
        raise AuthenticationFailed("unknown API key")
    if found.revoked_at is not None:
        raise AuthenticationFailed("this API key was revoked")
    return KeyInUse(found.id, found.name, tuple(found.scopes), found.last_used_at), found.Workspace


def mark_api_key_used(session: Session, key_id: str, when: datetime) -> None:
    """Record that the key was used at ``when`` (callers write this at most once a minute)."""
    session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=when))


def has_scope(api_key: ApiKey | KeyInUse, scope: str) -> bool:
    return scope in api_key.scopes or Scope.admin in api_key.scopes


def list_api_keys(session: Session, workspace_id: str) -> Sequence[ApiKey]:
    return session.scalars(
        select(ApiKey).where(ApiKey.workspace_id == workspace_id).order_by(ApiKey.created_at)
    ).all()


def revoke_api_key(session: Session, workspace_id: str, key_id: str, actor: Actor) -> ApiKey:
    api_key = session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.workspace_id == workspace_id))
    if api_key is None:
        raise ApiKeyNotFound(f"no API key {key_id}", key_id=key_id)
    if api_key.revoked_at is None:
        api_key.revoked_at = utcnow()
        record(session, actor, "api_key.revoke", workspace_id=workspace_id, target_type="api_key",
               target_id=api_key.id)
    return api_key
