"""``POST /customers``, ``/orders``, ``/refunds``, ``/events``: the live ingest endpoints (scope ``ingest``).

Each takes one item (answered ``201`` when accepted, ``200`` when already received, ``422`` naming each bad
field, or the problem a rule raised) or a batch ``{"items": [...]}`` of up to 1,000, answered ``200`` with
one result per item in order and totals; a batch's good items are kept whatever its bad ones are.

The body is read and validated before the caller is authenticated (authentication opens the write
transaction, and on SQLite nothing should hold the write lock while a body is parsed); nothing is
answered or written before authentication succeeds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any
from weakref import WeakKeyDictionary

import pydantic_core
from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, TypeAdapter
from starlette.concurrency import run_in_threadpool

from memberops.accounts.errors import AuthenticationFailed, MissingScope
from memberops.api.deps import Caller, ContextDep, SessionDep, require_scope
from memberops.api.errors import problem_responses
from memberops.db.engine import Store
from memberops.ingest import live
from memberops.ingest.errors import BatchTooLarge, ConcurrentIngest, OrderNotFound, RefundExceedsOrder
from memberops.ingest.lake_facts import LakeOrders, lake_orders
from memberops.ingest.live import ItemOutcome, LiveHooks
from memberops.ingest.schemas import (
    MAX_BATCH,
    BatchResult,
    CustomerIn,
    EventIn,
    ItemResult,
    OrderIn,
    ParsedBody,
    RefundIn,
    parse_body,
    request_errors,
)

router = APIRouter(tags=["ingest"])

IngestCaller = Annotated[Caller, Depends(require_scope("ingest"))]


async def get_live_hooks() -> LiveHooks:
    """The hooks live orders and refunds run through (a dependency, so tests can override it)."""
    return live.default_hooks()


HooksDep = Annotated[LiveHooks, Depends(get_live_hooks)]


POSTGRESQL_SLOTS = 8  # well under the connection pool (15) and the threadpool (40); see _ingest_slot


_SLOTS: WeakKeyDictionary[Store, asyncio.Semaphore] = WeakKeyDictionary()


async def _ingest_slot(context: ContextDep) -> AsyncIterator[bool]:
    """Admit a bounded number of ingest requests into the store at once, queued in arrival order; yields
    whether this request is the store's only writer (SQLite).

    Held from before the session opens until after its commit. Why:

    - SQLite admits one writer. A second ``BEGIN IMMEDIATE`` waits in SQLite's busy handler, which polls
      with growing sleeps (up to 100 ms each): under concurrent posts the lock sits free while waiters
      sleep and latencies reach seconds. One slot, woken at once when the previous request commits,
      keeps the write lock busy and the wait short.
    - PostgreSQL runs writers concurrently, but a request blocked on a row lock (every request of one API
      key updates its ``last_used_at``) keeps its worker thread and pooled connection while the request
      holding the lock needs a thread to commit: with more requests than threads or connections, they
      all wait for each other. A few slots leave threads and connections free for commits.
    """
    slots = _SLOTS.get(context.store)
    if slots is None:
        slots = _SLOTS[context.store] = asyncio.Semaphore(1 if context.store.dialect == "sqlite" else POSTGRESQL_SLOTS)
    async with slots:
        yield context.store.dialect == "sqlite"


IngestSlot = Annotated[bool, Depends(_ingest_slot, scope="function")]


def _body(kind: str) -> Callable[[Request], Awaitable[ParsedBody]]:
    async def read(request: Request) -> ParsedBody:
        return parse_body(kind, await request.body())

    return read


def _inline_refs(schema: Any, definitions: dict[str, Any]) -> Any:
    """``schema`` with its ``$defs`` references replaced by the definitions (OpenAPI cannot see ``$defs``)."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _inline_refs(definitions[schema["$ref"].rsplit("/", 1)[-1]], definitions)
        return {k: _inline_refs(v, definitions) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline_refs(v, definitions) for v in schema]
    return schema


def _request_body(model: type[BaseModel]) -> dict[str, Any]:
    raw = TypeAdapter(model).json_schema()
    item = _inline_refs(raw, raw.get("$defs", {}))
    batch = {"title": f"{model.__name__} batch", "type": "object", "additionalProperties": False,
             "required": ["items"], "properties": {"items": {"type": "array", "items": item, "maxItems": MAX_BATCH}}}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [item, batch]}}}}}


def _spec(model: type[BaseModel], *problems: type[Any]) -> dict[str, Any]:
    responses = problem_responses(AuthenticationFailed, MissingScope, BatchTooLarge, ConcurrentIngest, *problems)
    responses[422]["description"] = "validation_error, " + responses[422]["description"]
    responses[200] = {"model": BatchResult | ItemResult,
                      "description": "a batch: one result per item, in order; or a single item already received"}
    return {"status_code": 201, "response_model": ItemResult, "responses": responses,
            "openapi_extra": _request_body(model)}


def _answer(body: ParsedBody, results: list[ItemOutcome], kind: str) -> Response:
    if body.is_batch:
        totals = {"accepted": 0, "duplicate": 0, "rejected": 0}
        for result in results:
            totals[result.status] += 1
        content = {"results": [_result(r, kind) for r in results], "totals": totals}
        return Response(pydantic_core.to_json(content), status_code=200, media_type="application/json")
    (result,) = results
    if result.problem is not None:
        raise result.problem
    if result.status == "rejected":
        raise RequestValidationError(request_errors(body.items[0]))
    status = 201 if result.status == "accepted" else 200
    return Response(pydantic_core.to_json(_result(result, kind)), status_code=status, media_type="application/json")


_NONE: list[Any] = []  # shared by every result without errors (or warnings): to_json only reads it


def _result(result: ItemOutcome, kind: str) -> dict[str, Any]:
    return {"index": result.index, "status": result.status, "key": result.key, "member_id": result.member_id,
            "errors": [e.model_dump() for e in result.errors] if result.errors else _NONE,
            "warnings": [w.model_dump() for w in result.warnings] if result.warnings else _NONE,
            "points_earned": result.points if kind in ("orders", "events") else None,
            "points_reversed": result.points if kind == "refunds" else None}


async def _ingest(
    is_only_writer: bool, session: SessionDep, caller: Caller, kind: str, body: ParsedBody, hooks: LiveHooks,
    lake_orders: LakeOrders | None = None,
) -> list[ItemOutcome]:
    """Run the service. As the only writer (SQLite), in the event loop's thread: ingest requests are
    serialised already, so a worker thread would add a hand-off and no concurrency. Otherwise
    (PostgreSQL), in the threadpool, so concurrent requests overlap their waits on the database."""
    if is_only_writer:
        return live.ingest(session, caller.workspace, kind, body.items, hooks=hooks, lake_orders=lake_orders)
    return await run_in_threadpool(live.ingest, session, caller.workspace, kind, body.items, hooks=hooks,
                                   lake_orders=lake_orders)


def _checked(body: ParsedBody) -> ParsedBody:
    if body.body_errors:
        raise RequestValidationError(body.body_errors)
    if body.is_too_large:
        raise BatchTooLarge(body.batch_size, MAX_BATCH)
    return body


@router.post("/customers", **_spec(CustomerIn))
async def post_customers(
    body: Annotated[ParsedBody, Depends(_body("customers"))], is_only_writer: IngestSlot, session: SessionDep,
    caller: IngestCaller, hooks: HooksDep,
) -> Response:
    """Customer records: each resolved to a member at once and sent to the lake's identity records.

    A bad optional field (a malformed e-mail, an impossible birthday) is dropped with a warning and the
    record kept; a replay of a known ``(channel, source_id)`` changes nothing.
    """
    return _answer(body, await _ingest(is_only_writer, session, caller, "customers", _checked(body), hooks), "customers")


@router.post("/orders", **_spec(OrderIn))
async def post_orders(
    body: Annotated[ParsedBody, Depends(_body("orders"))], is_only_writer: IngestSlot, session: SessionDep,
    caller: IngestCaller, hooks: HooksDep,
) -> Response:
    """Orders (with their lines in ``items``): kept live for loyalty and sent to the lake."""
    return _answer(body, await _ingest(is_only_writer, session, caller, "orders", _checked(body), hooks), "orders")


@router.post("/refunds", **_spec(RefundIn, OrderNotFound, RefundExceedsOrder))
async def post_refunds(
    body: Annotated[ParsedBody, Depends(_body("refunds"))], is_only_writer: IngestSlot, session: SessionDep,
    caller: IngestCaller, hooks: HooksDep, context: ContextDep,
) -> Response:
    """Refunds of orders posted live or imported in bulk; never more than the order's paid amount in all
    (refunds imported in bulk count too)."""
    return _answer(body, await _ingest(is_only_writer, session, caller, "refunds", _checked(body), hooks,
                                       lake_orders(context.warehouse)), "refunds")


@router.post("/events", **_spec(EventIn))
async def post_events(
    body: Annotated[ParsedBody, Depends(_body("events"))], is_only_writer: IngestSlot, session: SessionDep,
    caller: IngestCaller, hooks: HooksDep,
) -> Response:
    """Behavioural events (page views, scans, coupon claims…), by a customer or an anonymous visitor."""
    return _answer(body, await _ingest(is_only_writer, session, caller, "events", _checked(body), hooks), "events")
