"""Moving outbox rows to the lake, in order, exactly once.

Each run works in three steps, each its own transaction:

1. **claim** the oldest unclaimed rows (in id order) by stamping them with a new ``batch_id``;
2. **write** the batch to the lake, one file per table and day named after the batch
   (``outbox-<batch_id>.parquet``), atomically;
3. **mark** the batch exported.

A crash after 1 or 2 leaves a claimed, unmarked batch; the next run finishes that batch first. Because
the batch's rows and file names are fixed at claim time, the rewrite finds the files already in place
(or writes the same ones), so the lake holds every row exactly once whatever step the crash hit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from sqlalchemy import func, select, update

from memberops.db.base import utcnow
from memberops.db.dialect import locked
from memberops.db.engine import Store
from memberops.db.outbox import OutboxRow
from memberops.ids import new_id
from memberops.lake import writer
from memberops.lake.registry import TIMESTAMP, TableSpec, records_to_arrow, table_spec

Stage = Callable[[str, str], None]
"""Called as ``on_stage(stage, batch_id)`` after ``claimed`` and ``written``: a seam for crash tests."""


@dataclass
class ExportResult:
    batches: int = 0
    rows: int = 0
    files_written: int = 0


def _lake_record(row: OutboxRow, batch_id: str) -> dict[str, Any]:
    return {**row.payload, "workspace_id": row.workspace_id, "batch_id": batch_id, "ingested_at": row.created_at}


def _claim(store: Store, batch_size: int) -> str | None:
    with store.transaction() as session:
        ids = session.scalars(
            locked(
                select(OutboxRow.id).where(OutboxRow.batch_id.is_(None)).order_by(OutboxRow.id).limit(batch_size)
            )
        ).all()
        if not ids:
            return None
        batch_id = new_id()
        session.execute(update(OutboxRow).where(OutboxRow.id.in_(ids)).values(batch_id=batch_id))
        return batch_id


def _pending_batches(store: Store) -> list[str]:
    """Batches claimed but never marked (a crash came between), oldest first."""
    first_id = func.min(OutboxRow.id)
    with store.read() as session:
        rows = session.execute(
            select(OutboxRow.batch_id, first_id)
            .where(OutboxRow.batch_id.is_not(None), OutboxRow.exported_at.is_(None))
            .group_by(OutboxRow.batch_id)
            .order_by(first_id)
        ).all()
    return [str(batch_id) for batch_id, _ in rows]


def _write(store: Store, lake: Path, batch_id: str) -> tuple[int, int]:
    with store.read() as session:
        rows = session.scalars(
            select(OutboxRow).where(OutboxRow.batch_id == batch_id).order_by(OutboxRow.id)
        ).all()
    by_topic: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_topic[row.topic].append(_lake_record(row, batch_id))
    files = 0
    stem = f"outbox-{batch_id}"
    for topic, records in by_topic.items():
        spec = table_spec(topic)
        table = _without_known_facts(lake, spec, records_to_arrow(spec, records), stem)
        written = writer.append(lake, spec, table, stem)
        files += sum(1 for w in written if w.is_new)
    return len(rows), files


def _without_known_facts(lake: Path, spec: TableSpec, table: pa.Table, stem: str) -> pa.Table:
    """``table`` less the facts the lake has already (same workspace and natural key) from another file.

    A fact posted live may have been imported in bulk before (an old order sent again by a POS): the live
    path knows only its own keys, so the exporter drops the copy here, where both meet. A fact lives in the
    partition of its own time, so only this batch's day partitions are read, and only their key columns.
    Files of this very batch are not counted: a rerun after a crash must write the same rows again.
    """
    if spec.derived or table.num_rows == 0:
        return table
    key = ["workspace_id", *spec.natural_key]
    days = pc.unique(pc.cast(pc.cast(table[spec.partition_by], TIMESTAMP), pa.date32())).to_pylist()
    files = [
        str(path) for day in days for path in writer.partition_dir(lake, spec, day).glob("*.parquet")
        if path.stem != stem
    ]
    if not files:
        return table
    known = ds.dataset(files, format="parquet").to_table(columns=key).group_by(key).aggregate([])
    if known.num_rows == 0:
        return table
    # Joined on the keys and a row number only: Arrow's join cannot carry list columns (coupon codes).
    keys = table.select(key).append_column("row", pa.array(range(table.num_rows), pa.int64()))
    kept = keys.join(known, key, join_type="left anti")["row"]
    return table.take(kept.take(pc.sort_indices(kept))) if len(kept) < table.num_rows else table


def _mark(store: Store, batch_id: str) -> None:
    with store.transaction() as session:
        session.execute(
            update(OutboxRow)
            .where(OutboxRow.batch_id == batch_id, OutboxRow.exported_at.is_(None))
            .values(exported_at=utcnow())
        )


def export_outbox(
    store: Store, lake: Path, *, batch_size: int = 5_000, max_batches: int | None = None,
    on_stage: Stage | None = None,
) -> ExportResult:
    """Move every unexported outbox row to the lake; safe to run again after a crash at any point."""
    result = ExportResult()

    def finish(batch_id: str) -> None:
        rows, files = _write(store, lake, batch_id)
        if on_stage:
            on_stage("written", batch_id)
        _mark(store, batch_id)
        result.batches += 1
        result.rows += rows
        result.files_written += files

    for pending in _pending_batches(store):
        finish(pending)
    while max_batches is None or result.batches < max_batches:
        claimed = _claim(store, batch_size)
        if claimed is None:
            break
        if on_stage:
            on_stage("claimed", claimed)
        finish(claimed)
    return result


def outbox_backlog(store: Store) -> int:
    """How many outbox rows are not in the lake yet."""
    with store.read() as session:
        return int(session.scalar(select(func.count(OutboxRow.id)).where(OutboxRow.exported_at.is_(None))) or 0)
