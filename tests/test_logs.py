from __future__ import annotations

import logging
import logging.config

from memberops.logs import DropQueryStrings, uvicorn_log_config


def test_access_log_drops_query_strings() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", "/api/v1/members?phone=13800138001", "1.1", 200), None)
    assert DropQueryStrings().filter(record)
    assert "13800138001" not in record.getMessage()
    assert "/api/v1/members?…" in record.getMessage()


def test_uvicorn_config_wires_the_filter() -> None:
    logging.config.dictConfig(uvicorn_log_config())
    handler = logging.getLogger("uvicorn.access").handlers[0]
    assert any(isinstance(f, DropQueryStrings) for f in handler.filters)
