"""The state-store benchmarks' shared set-up: a SQLite store built by the migrations in a temporary folder,
with one workspace, and the teardown and check that go with it.

Not a benchmark module (its name does not start with ``bench_``): ``bench_coupons.py`` and ``bench_tiers.py``
load it by path, as the harness loads them (``memberops.benchmarks.load_bench_module``).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Protocol

from memberops.accounts import service as accounts
from memberops.db import migrate
from memberops.db.engine import Store


def sqlite_store(name: str) -> tuple[Path, Store, str]:
    """A fresh temporary folder holding a SQLite state store built by the migrations, with the workspace
    "Bench brand": (the folder, the store, the workspace's id)."""
    root = Path(tempfile.mkdtemp(prefix=f"memberops-bench-{name}-"))
    store = Store(f"sqlite:///{root / 'memberops.db'}")
    migrate.upgrade(store)
    with store.transaction() as session:
        workspace_id = accounts.ensure_workspace(session, name="Bench brand").id
    return root, store, workspace_id


class _OnSqliteStore(Protocol):
    root: Path
    store: Store


def teardown(data: _OnSqliteStore) -> None:
    """Close the store of a set-up made on :func:`sqlite_store` and remove its folder."""
    data.store.dispose()
    shutil.rmtree(data.root, ignore_errors=True)


def same(ours: Any, baseline: Any) -> None:
    """The check of a benchmark whose two sides must give the same answer."""
    assert ours == baseline, (ours, baseline)
