"""``POST /customers``, ``/orders``, ``/refunds``, ``/events``: the live ingest endpoints (scope ``ingest``).

Each takes one item (answered ``201`` when accepted, ``200`` when already received, ``422`` naming each bad
field, or the problem a rule raised) or a batch ``{"items": [...]}`` of up to 1,000, answered ``200`` with
one result per item in order and totals; a batch's good items are kept whatever its bad ones are.

The body is read and validated before the caller is authenticated (authentication happens in the write
transaction, and on SQLite nothing should hold the write lock while a body is parsed); nothing is
answered or written before authentication succeeds. The work runs through :class:`memberops.api.deps.Writer`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Any

import pydantic_core
from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, TypeAdapter
from sqlalchemy.orm import Session

from memberops.accounts.errors import AuthenticationFailed, MissingScope
from memberops.api.deps import Caller, ContextDep, Writer, write_slot, writer
from memberops.api.errors import problem_responses
from memberops.api.group_commit import GroupCommit, GroupWork
from memberops.errors import DomainError
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
    ParsedItem,
    RefundIn,
    parse_body,
    request_errors,
)

router = APIRouter(tags=["ingest"])

IngestWriter = Annotated[Writer, Depends(writer("ingest"))]


async def get_live_hooks() -> LiveHooks:
    """The hooks live orders and refunds run through (a dependency, so tests can override it)."""
    return live.default_hooks()


HooksDep = Annotated[LiveHooks, Depends(get_live_hooks)]


async def _ingest_slot(context: ContextDep) -> AsyncIterator[bool]:
    """The store's write slot (see :func:`memberops.api.deps.write_slot`) for endpoints that run with a
    request-scoped session; yields whether this request is the store's only writer (SQLite)."""
    async with write_slot(context.store) as is_only_writer:
        yield is_only_writer


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


def _ingest(
    session: Session, caller: Caller, kind: str, body: ParsedBody, hooks: LiveHooks,
    lake_orders: LakeOrders | None = None,
) -> Response:
    """Run the service on a checked body and answer, inside the write transaction (a single item the
    service rejects raises here, so nothing of it is committed)."""
    items = _checked(body).items
    return _answer(body, live.ingest(session, caller.workspace, kind, items, hooks=hooks, lake_orders=lake_orders),
                   kind)


@dataclass(frozen=True, slots=True)
class _Posted:
    """A single-item request waiting to be committed with others of its kind (see :mod:`memberops.api.group_commit`)."""

    body: ParsedBody
    hooks: LiveHooks


def _ingest_together(kind: str) -> GroupWork[_Posted, list[ItemOutcome]]:
    """Ingest several requests' items in one call per workspace (and hooks), as one batch would, and hand
    each request back its own items' outcomes with their own indices."""

    def work(session: Session, requests: Sequence[tuple[Caller, _Posted]]) -> list[Any]:
        results: list[Any] = [None] * len(requests)
        together: dict[tuple[str, LiveHooks], list[int]] = {}
        for position, (caller, posted) in enumerate(requests):
            try:
                _checked(posted.body)
            except (DomainError, RequestValidationError) as exc:
                results[position] = exc
                continue
            together.setdefault((caller.workspace.id, posted.hooks), []).append(position)
        for (_, hooks), positions in together.items():
            items: list[ParsedItem] = []
            owners: list[tuple[int, int]] = []
            for position in positions:
                for item in requests[position][1].body.items:
                    owners.append((position, item.index))
                    items.append(replace(item, index=len(items)))
            outcomes = live.ingest(session, requests[positions[0]][0].workspace, kind, items, hooks=hooks)
            for position in positions:
                results[position] = []
            for (position, index), outcome in zip(owners, outcomes, strict=True):
                outcome.index = index
                results[position].append(outcome)
        return results

    return work


# Single items posted to these endpoints are committed in groups on SQLite; refunds are not (they read the
# lake's orders per request, and are rare next to orders).
_GROUPS = {kind: GroupCommit(("ingest",), _ingest_together(kind)) for kind in ("customers", "orders", "events")}


async def _single_or_batch(write: Writer, kind: str, body: ParsedBody, hooks: LiveHooks) -> Response:
    """A single item on SQLite is committed with the others waiting for the writer (group commit); a
    batch, or any request on PostgreSQL, in a transaction of its own."""
    if body.is_batch or write.store.dialect != "sqlite":
        return await write(_ingest, kind, body, hooks)
    return _answer(body, await _GROUPS[kind].submit(write.store, write.token, _Posted(body, hooks)), kind)


def _checked(body: ParsedBody) -> ParsedBody:
    if body.body_errors:
        raise RequestValidationError(body.body_errors)
    if body.is_too_large:
        raise BatchTooLarge(body.batch_size, MAX_BATCH)
    return body


@router.post("/customers", **_spec(CustomerIn))
async def post_customers(
    body: Annotated[ParsedBody, Depends(_body("customers"))], write: IngestWriter, hooks: HooksDep,
) -> Response:
    """Customer records: each resolved to a member at once and sent to the lake's identity records.

    A bad optional field (a malformed e-mail, an impossible birthday) is dropped with a warning and the
    record kept; a replay of a known ``(channel, source_id)`` changes nothing.
    """
    return await _single_or_batch(write, "customers", body, hooks)


@router.post("/orders", **_spec(OrderIn))
async def post_orders(
    body: Annotated[ParsedBody, Depends(_body("orders"))], write: IngestWriter, hooks: HooksDep,
) -> Response:
    """Orders (with their lines in ``items``): kept live for loyalty and sent to the lake."""
    return await _single_or_batch(write, "orders", body, hooks)


@router.post("/refunds", **_spec(RefundIn, OrderNotFound, RefundExceedsOrder))
async def post_refunds(
    body: Annotated[ParsedBody, Depends(_body("refunds"))], write: IngestWriter, hooks: HooksDep,
    context: ContextDep,
) -> Response:
    """Refunds of orders posted live or imported in bulk; never more than the order's paid amount in all
    (refunds imported in bulk count too)."""
    return await write(_ingest, "refunds", body, hooks, lake_orders(context.warehouse))


@router.post("/events", **_spec(EventIn))
async def post_events(
    body: Annotated[ParsedBody, Depends(_body("events"))], write: IngestWriter, hooks: HooksDep,
) -> Response:
    """Behavioural events (page views, scans, coupon claims…), by a customer or an anonymous visitor."""
    return await _single_or_batch(write, "events", body, hooks)
