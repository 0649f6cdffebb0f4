"""Domain errors → HTTP problems (RFC 9457 ``application/problem+json``), in one table.

Every error body has ``type``, ``title``, ``status``, ``detail`` and a stable ``code`` that clients may
switch on; validation errors add ``errors``: one entry per bad field with its location and message.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from memberops.accounts.errors import AuthenticationFailed, MissingScope, RoleNotAllowed
from memberops.errors import Conflict, DomainError, Forbidden, Invalid, NotFound
from memberops.lake.engine import WarehouseError

PROBLEM_JSON = "application/problem+json"

# Most specific first: the first class an error is an instance of decides its status.
STATUS_BY_ERROR: list[tuple[type[DomainError], int]] = [
    (AuthenticationFailed, 401),
    (MissingScope, 403),
    (RoleNotAllowed, 403),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (Invalid, 422),
    (WarehouseError, 500),
]

_CODE_BY_STATUS = {
    400: "bad_request", 401: "authentication_failed", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 413: "request_too_large", 415: "unsupported_media_type",
    422: "validation_error", 429: "rate_limited", 500: "internal_error",
}


def status_for(error: DomainError) -> int:
    for error_type, status in STATUS_BY_ERROR:
        if isinstance(error, error_type):
            return status
    return 400


def problem(status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
    body = {
        "type": f"https://memberops.dev/problems/{code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def problem_responses(*errors: type[DomainError]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for an endpoint, so OpenAPI documents the problems it can answer with."""
    responses: dict[int | str, dict[str, Any]] = {}
    for error in errors:
        status = next(s for t, s in STATUS_BY_ERROR if issubclass(error, t))
        entry = responses.setdefault(status, {"description": "", "content": {PROBLEM_JSON: {}}})
        entry["description"] = ", ".join(filter(None, [entry["description"], error.code]))
    return responses


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_request: Request, exc: DomainError) -> JSONResponse:
        status = status_for(exc)
        facts = {k: v for k, v in exc.facts.items() if k != "sql"}
        detail = exc.message if status < 500 else "the warehouse query failed; see the server log"
        return problem(status, exc.code, detail, **({"facts": facts} if facts and status < 500 else {}))

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "field": ".".join(str(p) for p in e.get("loc", ())[1:]),
             "message": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return problem(422, "validation_error", "the request is not valid; see errors", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _CODE_BY_STATUS.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        return problem(exc.status_code, code, detail)
