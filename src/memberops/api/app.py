"""The ASGI application: API under ``/api/v1``, ``/health``, the console at ``/``."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from sqlalchemy import text

import memberops
from memberops.api.errors import install_error_handlers
from memberops.api.limits import BodySizeLimit
from memberops.runtime import Context

log = logging.getLogger(__name__)


@functools.cache
def api_router() -> APIRouter:
    """The ``/api/v1`` router, built once per process. FastAPI works out every route's parameters when a router
    is included and keeps the result on the router: one shared router costs that once, not once per app
    (≈0.7 s each; the test suite makes hundreds of apps)."""
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

    router = APIRouter(prefix="/api/v1")
    for domain_router in (accounts_router, ingest_router, identity_router, insight_router, loyalty_router,
                          analytics_router, audit_router, coupon_router, referral_router, reward_router):
        router.include_router(domain_router)
    return router


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

    app.include_router(api_router())

    from memberops.web import mount_console

    mount_console(app, context)
    return app
