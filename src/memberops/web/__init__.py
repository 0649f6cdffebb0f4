"""The console: server-rendered pages (Jinja2) for operators."""

from __future__ import annotations

from fastapi import FastAPI

from memberops.runtime import Context


def mount_console(app: FastAPI, context: Context) -> None:
    """Add the console's pages and static files to ``app``."""
