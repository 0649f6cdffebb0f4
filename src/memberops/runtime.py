"""What a running memberops process holds: its settings, the state store, the warehouse and the queue.

Built once by a face (``memberops serve``, a CLI command, a test) and passed down; nothing is held at
module level.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from memberops.config import Settings
from memberops.db.engine import Store

if TYPE_CHECKING:
    from huey import Huey

    from memberops.lake.engine import Warehouse


@dataclass
class Context:
    settings: Settings
    store: Store
    _warehouse: Warehouse | None = field(default=None, repr=False)
    _queue: Huey | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Context:
        settings.ensure_data_dir()
        return cls(settings=settings, store=Store(settings.database_url))

    def warehouse(self) -> Warehouse:
        """The warehouse engine, connected on first use (a Spark session takes seconds to start)."""
        with self._lock:
            if self._warehouse is None:
                from memberops.lake.engine import connect_warehouse

                self._warehouse = connect_warehouse(self.settings)
            return self._warehouse

    def queue(self) -> Huey:
        """The job queue, with every memberops task registered on it."""
        with self._lock:
            if self._queue is None:
                from memberops.jobs.queue import build_queue

                self._queue = build_queue(self)
            return self._queue

    def close(self) -> None:
        if self._warehouse is not None:
            self._warehouse.close()
        self.store.dispose()
