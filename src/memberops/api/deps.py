"""Request-scoped dependencies: the context, one transaction per request, and the calling API key."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from memberops.accounts import service as accounts
from memberops.accounts.errors import AuthenticationFailed, MissingScope
from memberops.accounts.models import ApiKey, Workspace
from memberops.audit.service import Actor
from memberops.db.base import utcnow
from memberops.runtime import Context

LAST_USED_RESOLUTION = timedelta(minutes=1)


async def get_context(request: Request) -> Context:
    """The process context (async: no thread hand-off just to read an attribute)."""
    return request.app.state.context  # type: ignore[no-any-return]


def get_session(context: Annotated[Context, Depends(get_context)]) -> Iterator[Session]:
    """One transaction per request: committed when the endpoint returns, rolled back if it raises.

    Used with ``scope="function"`` so the commit happens before the response is sent: a client that
    got a 201 always finds the row on its next call, and a failed commit is never answered with a 2xx.
    """
    with context.store.transaction() as session:
        yield session


ContextDep = Annotated[Context, Depends(get_context)]
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


class Caller:
    """The authenticated API key and its workspace."""

    def __init__(self, api_key: ApiKey, workspace: Workspace) -> None:
        self.api_key = api_key
        self.workspace = workspace

    @property
    def actor(self) -> Actor:
        return Actor("api_key", self.api_key.id)


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed("send the API key as `Authorization: Bearer <key>`")
    return token.strip()


def require_scope(scope: str | None, *alternatives: str) -> Callable[..., Caller]:
    """A dependency admitting only API keys granted ``scope`` or one of ``alternatives`` (or ``admin``);
    ``None``: any valid key."""

    def dependency(request: Request, session: SessionDep) -> Caller:
        api_key = accounts.authenticate_api_key(session, _bearer(request))
        if scope is not None and not any(accounts.has_scope(api_key, s) for s in (scope, *alternatives)):
            raise MissingScope(scope, list(api_key.scopes))
        now = utcnow()
        # Written at most once a minute: a write per request would lock the key's row on every call,
        # serialising every request made with the same key.
        if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
            api_key.last_used_at = now
        workspace = session.get(Workspace, api_key.workspace_id)
        assert workspace is not None  # the foreign key guarantees it
        return Caller(api_key, workspace)

    return dependency
