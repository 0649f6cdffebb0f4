"""Logging that keeps PII out: access logs show paths without their query strings.

A query string can carry a phone number or an e-mail (a member search), so the access log drops it.
"""

from __future__ import annotations

import copy
import logging
from typing import Any


class DropQueryStrings(logging.Filter):
    """Replace ``?…`` in uvicorn access-log paths by ``?…`` (the query itself never reaches the log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], args[2].split("?", 1)[0] + "?…", *args[3:])
        return True


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's own logging configuration with :class:`DropQueryStrings` on the access log."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["drop_query_strings"] = {"()": f"{__name__}.DropQueryStrings"}
    config["handlers"]["access"]["filters"] = ["drop_query_strings"]
    return config
