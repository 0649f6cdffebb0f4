"""The ASGI application: API under ``/api/v1``, ``/health``, the console at ``/``."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import text

import memberops
from memberops.api.errors import install_error_handlers
from memberops.api.limits import BodySizeLimit
from memberops.runtime import Context

log = logging.getLogger(__name__)


API_PREFIX = "/api/v1"


@functools.cache
def api_routers() -> tuple[APIRouter, ...]:
    """The domain routers served under :data:`API_PREFIX`, in the order their routes are matched and documented."""
    from memberops.accounts.api import router as accounts_router
    from memberops.analytics.api import router as analytics_router
    from memberops.audit.api import router as audit_router
    from memberops.identity.api import router as identity_router
    from memberops.ingest.api import router as ingest_router
    from memberops.insight.api import router as insight_router
    from memberops.loyalty.api import router as loyalty_router
    from memberops.loyalty.coupon_api import router as coupon_router
    from memberops.loyalty.referral_api import router as referral_router
    from memberops.loyalty.reward_api import router as reward_router

    return (accounts_router, ingest_router, identity_router, insight_router, loyalty_router, analytics_router,
            audit_router, coupon_router, referral_router, reward_router)


def add_api_routes(app: FastAPI) -> None:
    """Serve every domain router's routes under :data:`API_PREFIX` as routes of ``app`` itself.

    Why not ``app.include_router``: FastAPI (since 0.137) keeps an included router as one nested route that
    is searched route by route when a request is matched, and searched again when it is handled — for every
    request, at every level of nesting. Routes of the app itself are matched once, in one pass; on the
    points path that search cost more CPU than authenticating the caller. Each route is declared again here
    with everything its router gave it (what ``include_router`` itself did before 0.137), so the API and its
    OpenAPI document are the same, and ``app.dependency_overrides`` applies to them as to any route of the app.
    """
    for router in api_routers():
        for route in router.routes:
            if not isinstance(route, APIRoute):
                raise TypeError(f"{route!r}: the API serves FastAPI routes only")
            app.router.add_api_route(
                API_PREFIX + route.path, route.endpoint, response_model=route.response_model,
                status_code=route.status_code, tags=route.tags, dependencies=route.dependencies,
                summary=route.summary, description=route.description,
                response_description=route.response_description, responses=route.responses,
                deprecated=route.deprecated, methods=route.methods, operation_id=route.operation_id,
                response_model_include=route.response_model_include,
                response_model_exclude=route.response_model_exclude,
                response_model_by_alias=route.response_model_by_alias,
                response_model_exclude_unset=route.response_model_exclude_unset,
                response_model_exclude_defaults=route.response_model_exclude_defaults,
                response_model_exclude_none=route.response_model_exclude_none,
                include_in_schema=route.include_in_schema, response_class=route.response_class, name=route.name,
                route_class_override=type(route), callbacks=route.callbacks, openapi_extra=route.openapi_extra,
                generate_unique_id_function=route.generate_unique_id_function,
                strict_content_type=route.strict_content_type, max_body_size=route.max_body_size,
                form_limits=route.form_limits,
            )


def create_app(context: Context, *, run_jobs: bool = False) -> FastAPI:
    """The memberops web application over ``context``.

    With ``run_jobs`` the process also runs a queue worker and the periodic scheduler (``memberops serve``),
    so one process is enough.
    """

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        consumer = None
        if run_jobs:
            from memberops.jobs.queue import start_consumer

            consumer = start_consumer(context.queue(), workers=1)
            log.info("job worker and scheduler started in-process")
        try:
            yield
        finally:
            if consumer is not None:
                consumer.stop(graceful=True)

    app = FastAPI(
        title="memberops",
        version=memberops.__version__,
        summary="Member operations platform: identity, insight, loyalty, engagement, experiments.",
        lifespan=lifespan,
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.context = context
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=context.settings.max_request_bytes)

    @app.get("/health", tags=["ops"])
    def health() -> dict[str, str]:
        """Liveness and the state store's reachability."""
        with context.store.read() as session:
            session.execute(text("SELECT 1"))
        return {"status": "ok", "version": memberops.__version__}

    add_api_routes(app)

    from memberops.web import mount_console

    mount_console(app, context)
    return app
