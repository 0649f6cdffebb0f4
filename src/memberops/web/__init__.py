"""The console: server-rendered pages (Jinja2) for operators.

No JavaScript framework and nothing from a CDN: the pages are plain HTML forms, the look is our own
stylesheet in ``web/static``. One module per page group: ``auth`` (login, logout), ``pages``
(dashboard), ``members`` (search, the 360° profile with its points panel), ``identity`` (the review
queue), ``insight`` (tags), ``loyalty`` (the programme, the points liability), ``coupons`` (coupon templates,
a member's coupons and benefits), ``rewards`` (the rewards catalogue), ``admin`` (operators, API keys, audit
log); ``session`` holds
the cookie, CSRF and role helpers they share, ``rendering`` the templates and error pages.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from memberops.runtime import Context


def mount_console(app: FastAPI, context: Context) -> None:
    """Add the console's pages and static files to ``app``.

    The pages find ``context`` on ``app.state`` (set by :func:`memberops.api.app.create_app`), like the
    API's routes do, so nothing is held at module level.
    """
    from memberops.web import admin, auth, coupons, identity, insight, loyalty, members, pages, rewards
    from memberops.web.rendering import STATIC_DIR

    app.state.context = getattr(app.state, "context", context)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="console-static")
    for page_group in (auth.router, pages.router, members.router, identity.router, insight.router, loyalty.router,
                       coupons.router, rewards.router, admin.router):
        app.include_router(page_group)
