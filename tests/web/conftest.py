"""The console pages through the real app: a client over the test's context (helpers in ``tests/console.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from memberops.accounts.models import Workspace
from memberops.api.app import create_app
from memberops.runtime import Context


@pytest.fixture
def console(context: Context, workspace: Workspace) -> Iterator[TestClient]:
    """A client of the console, over the test's context with its workspace."""
    with TestClient(create_app(context)) as test_client:
        yield test_client
