"""Group commit: single-item writes that queue for SQLite's one writer are committed together.

SQLite admits one writer at a time, so concurrent posts of single orders wait for each other in
:func:`memberops.api.deps.write_slot` anyway. What a request costs there is partly fixed: a transaction,
authenticating the key, the statements that look members up and insert rows — the same for one item as
for eight. So the request that gets the slot first lets the event loop run a few turns (:func:`_settle`),
until the requests whose bytes have already arrived are parsed and queued; it then takes every request of
its kind that queued (up to :data:`MAX_GROUP`) and runs them as one batch in one transaction, as the batch
endpoints do; each request
is then answered with its own items' outcomes, after the commit. Nothing changes for the client: its
request is committed before it is answered, a replay is a duplicate, and two requests carrying the same
natural key in one group are a first (accepted) and a replay (duplicate), as in one batch.

One request's trouble never fails its neighbours: a key that does not authenticate fails only its own
request, and if the group's transaction raises, each request of the group is run again alone, in its own
transaction, so only the one that raises fails.

The group runs in the event loop's thread, as :class:`memberops.api.deps.Writer` runs SQLite writes: the
loop is blocked meanwhile, but the requests arriving then wait in the sockets and are read together when
it returns, to form the next group (as large as the number of clients waiting: 8 of 8 in the HTTP
single-order benchmark). Measured against running the group in a worker thread, so that the loop could
read requests meanwhile, in interleaved runs of that benchmark: less server CPU per order in each of five
runs, by 1–19% (1.6–2.5 ms against 1.9–2.6 ms: no thread hand-offs, no two threads taking turns at the GIL). On a
machine whose cores are all busy with other work the worker thread can still answer more orders a second
(two runnable threads get two shares of the CPU); with the cores to itself, the CPU per order is what
sets the rate. With ``synchronous=NORMAL`` in WAL mode a commit does not wait for the disk, so nothing
slow blocks the loop.

Used on SQLite only: PostgreSQL runs writers concurrently and gains nothing from waiting for company.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from weakref import WeakKeyDictionary

from sqlalchemy.orm import Session

from memberops.api.deps import Caller, authenticate, write_slot
from memberops.db.engine import Store
from memberops.errors import DomainError

P = TypeVar("P")
R = TypeVar("R")

MAX_GROUP = 64  # requests per transaction: bounds the latency one request adds to the others of its group
SETTLE_ROUNDS = 8  # turns of the event loop a group waits, at most, for requests already read to join it


@dataclass(slots=True)
class _Waiting(Generic[P, R]):
    token: str
    payload: P
    done: asyncio.Future[R] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


# (Caller, payload) pairs in, one result per pair out, in order; a DomainError raised for one pair's own
# reason (its body, say) may be returned in its place instead of raised.
GroupWork = Callable[[Session, Sequence[tuple[Caller, P]]], Sequence["R | DomainError"]]


async def _settle(queue: list[Any]) -> None:
    """Let the event loop run until no more requests join ``queue`` (at most :data:`SETTLE_ROUNDS` turns):
    requests whose bytes have arrived are parsed and queue up, so they share this group's transaction."""
    for _ in range(SETTLE_ROUNDS):
        before = len(queue)
        await asyncio.sleep(0)
        if len(queue) == before:
            return


class GroupCommit(Generic[P, R]):
    """Commits the requests of one kind (``orders``, say) that wait for the same store together."""

    def __init__(self, scopes: tuple[str, ...], work: GroupWork[P, R]) -> None:
        self.scopes = scopes
        self.work = work
        self._queues: WeakKeyDictionary[Store, list[_Waiting[P, R]]] = WeakKeyDictionary()

    async def submit(self, store: Store, token: str, payload: P) -> R:
        """The request's result once committed (with its group), or its own exception."""
        waiting: _Waiting[P, R] = _Waiting(token, payload)
        queue = self._queues.setdefault(store, [])
        queue.append(waiting)
        async with write_slot(store):
            while not waiting.done.done():  # an earlier holder of the slot may have run it already
                await _settle(queue)
                group = queue[:MAX_GROUP]
                del queue[:MAX_GROUP]
                for each, result in self._commit(store, group):
                    if isinstance(result, BaseException):
                        each.done.set_exception(result)
                    else:
                        each.done.set_result(result)
        return waiting.done.result()

    def _commit(self, store: Store, group: list[_Waiting[P, R]]) -> list[tuple[_Waiting[P, R], Any]]:
        """Each request of the group with its result or exception (futures are set by the caller, in the
        event loop's thread)."""
        try:
            with store.transaction() as session:
                results = self._run(store, session, group)
        except Exception as exc:  # noqa: BLE001 — whatever failed the group is found by running each alone
            if len(group) == 1:
                return [(group[0], exc)]
            return [pair for waiting in group for pair in self._commit(store, [waiting])]
        return list(zip(group, results, strict=True))

    def _run(self, store: Store, session: Session, group: list[_Waiting[P, R]]) -> list[Any]:
        """Authenticate each request (a key once per group), then run the authenticated ones together."""
        results: list[Any] = [None] * len(group)
        callers: dict[str, Caller | DomainError] = {}
        admitted: list[int] = []
        for position, waiting in enumerate(group):
            caller = callers.get(waiting.token)
            if caller is None:
                try:
                    caller = authenticate(store, session, waiting.token, self.scopes)
                except DomainError as exc:
                    caller = exc
                callers[waiting.token] = caller
            if isinstance(caller, DomainError):
                results[position] = caller
            else:
                admitted.append(position)
        if admitted:
            done = self.work(session, [(callers[group[i].token], group[i].payload) for i in admitted])  # type: ignore[misc]
            for position, result in zip(admitted, done, strict=True):
                results[position] = result
        return results
