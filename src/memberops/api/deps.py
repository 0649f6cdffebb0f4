"""Request-scoped dependencies: the context, one transaction per request, and the calling API key.

Two ways a request reaches the store:

- :data:`SessionDep` with :func:`require_scope`: one transaction opened by FastAPI for the request — a
  reading one for ``GET``/``HEAD`` (on SQLite it takes no write lock, on PostgreSQL it is ``READ ONLY``),
  a write transaction otherwise.
- :func:`writer`: for the hot write paths (live ingest, points). The endpoint hands its work to a
  :class:`Writer`, which admits it through the store's write slots and runs authentication, the work and
  the commit as one call — in the event loop's thread on SQLite, where writers are serialised anyway, or
  in one worker thread on PostgreSQL. FastAPI's own dependencies would hop threads four times per request
  (open, authenticate, run, commit); on this path that hand-off cost more than the work.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial
from typing import Annotated, Any, Concatenate, ParamSpec, TypeVar
from weakref import WeakKeyDictionary

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from memberops.accounts import service as accounts
from memberops.accounts.errors import AuthenticationFailed, MissingScope
from memberops.accounts.models import Workspace
from memberops.audit.service import Actor
from memberops.db.base import utcnow
from memberops.db.engine import Store
from memberops.runtime import Context

LAST_USED_RESOLUTION = timedelta(minutes=1)
READING_METHODS = frozenset({"GET", "HEAD"})

P = ParamSpec("P")
T = TypeVar("T")


async def get_context(request: Request) -> Context:
    """The process context (async: no thread hand-off just to read an attribute)."""
    return request.app.state.context  # type: ignore[no-any-return]


def get_session(request: Request, context: Annotated[Context, Depends(get_context)]) -> Iterator[Session]:
    """One transaction per request: committed when the endpoint returns, rolled back if it raises.

    ``GET`` and ``HEAD`` read in a reading transaction, so on SQLite they never queue behind a writer's
    lock, and on PostgreSQL a read that tried to write would fail loudly instead of writing.

    Used with ``scope="function"`` so the commit happens before the response is sent: a client that
    got a 201 always finds the row on its next call, and a failed commit is never answered with a 2xx.
    """
    opened = context.store.read() if request.method in READING_METHODS else context.store.transaction()
    with opened as session:
        yield session


ContextDep = Annotated[Context, Depends(get_context)]
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


class Caller:
    """The authenticated API key (as read for this request) and its workspace."""

    def __init__(self, api_key: accounts.KeyInUse, workspace: Workspace) -> None:
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


def authenticate(store: Store, session: Session, token: str, scopes: tuple[str, ...]) -> Caller:
    """The caller holding ``token`` if it is granted one of ``scopes`` (or ``admin``; ``()``: any key).

    The key's ``last_used_at`` is written at most once a minute: a write per request would lock the
    key's row on every call, serialising every request made with the same key. In a reading transaction
    it is written in a short transaction of its own."""
    api_key, workspace = accounts.authenticate_api_key(session, token)
    if scopes and not any(accounts.has_scope(api_key, s) for s in scopes):
        raise MissingScope(scopes[0], list(api_key.scopes))
    now = utcnow()
    if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
        if Store.is_reading(session):
            with store.transaction() as writing:
                accounts.mark_api_key_used(writing, api_key.id, now)
        else:
            accounts.mark_api_key_used(session, api_key.id, now)
    return Caller(api_key, workspace)


def require_scope(scope: str | None, *alternatives: str) -> Callable[..., Caller]:
    """A dependency admitting only API keys granted ``scope`` or one of ``alternatives`` (or ``admin``);
    ``None``: any valid key."""
    scopes = () if scope is None else (scope, *alternatives)

    def dependency(request: Request, context: ContextDep, session: SessionDep) -> Caller:
        return authenticate(context.store, session, _bearer(request), scopes)

    return dependency


# --- the write path ---------------------------------------------------------------------------------------

POSTGRESQL_SLOTS = 8  # well under the connection pool (15) and the threadpool (40); see write_slot

_SLOTS: WeakKeyDictionary[Store, asyncio.Semaphore] = WeakKeyDictionary()


@asynccontextmanager
async def write_slot(store: Store) -> AsyncIterator[bool]:
    """Admit a bounded number of writing requests into the store at once, queued in arrival order;
    yields whether this request is the store's only writer (SQLite).

    Held from before the transaction opens until after its commit. Why:

    - SQLite admits one writer. A second ``BEGIN IMMEDIATE`` waits in SQLite's busy handler, which polls
      with growing sleeps (up to 100 ms each): under concurrent posts the lock sits free while waiters
      sleep and latencies reach seconds. One slot, woken at once when the previous request commits,
      keeps the write lock busy and the wait short.
    - PostgreSQL runs writers concurrently, but a request blocked on a row lock (two terminals redeeming
      one member's points) keeps its worker thread and pooled connection while the request holding the
      lock needs a thread to commit: with more requests than threads or connections, they all wait for
      each other. A few slots leave threads and connections free for commits.
    """
    slots = _SLOTS.get(store)
    if slots is None:
        slots = _SLOTS[store] = asyncio.Semaphore(1 if store.dialect == "sqlite" else POSTGRESQL_SLOTS)
    async with slots:
        yield store.dialect == "sqlite"


class Writer:
    """Runs one request's write: a write slot, one transaction, the caller's authentication, the work,
    the commit — before the endpoint answers, so a 2xx always means committed."""

    def __init__(self, store: Store, token: str, scopes: tuple[str, ...]) -> None:
        self.store = store
        self.token = token
        self.scopes = scopes

    async def __call__(
        self, work: Callable[Concatenate[Session, Caller, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``work(session, caller, *args, **kwargs)`` in its transaction: its result once committed, or
        its exception once rolled back (a domain error raised by ``work`` never leaves a write behind)."""
        call = partial(self._in_transaction, work, *args, **kwargs)
        async with write_slot(self.store) as is_only_writer:
            return call() if is_only_writer else await run_in_threadpool(call)

    def _in_transaction(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self.store.transaction() as session:
            caller = authenticate(self.store, session, self.token, self.scopes)
            return work(session, caller, *args, **kwargs)


def writer(scope: str, *alternatives: str) -> Callable[..., Any]:
    """A dependency giving the endpoint a :class:`Writer` for keys granted ``scope`` or one of
    ``alternatives`` (or ``admin``). A request without a bearer key is refused here, before any wait."""
    scopes = (scope, *alternatives)

    async def dependency(request: Request) -> Writer:  # the context read here: one dependency fewer to solve
        return Writer(request.app.state.context.store, _bearer(request), scopes)

    return dependency
