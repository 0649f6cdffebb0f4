"""Lake compaction: each fact partition's many small files rewritten as one.

Every import and every outbox batch adds one file per day it touches, so a table soon holds thousands of
small files and a query spends its time opening them. :func:`compact` merges the files of a partition
(``<table>/day=D/``) into one ``compact-<id>.parquet`` of the registry schema.

**The swap.** A partition is rebuilt beside the lake, in ``_tmp/``: the merged file, hard links to the
files left as they are, and the partition's record of compacted batches. The rebuilt folder then takes the
partition's place in one ``renameat2(RENAME_EXCHANGE)``: a reader listing the partition sees either every
old file or the new set, never both (no row twice) and never neither (no row missed). A query that listed
the old files and opens one after the swap fails (the file is gone) and is retried; it never answers
with wrong rows. A file renamed into the old folder by a writer between the last listing and the swap
is moved into the new one at once (it is not lost; it may be invisible for that instant).

**Re-exports.** The outbox exporter finds a batch's file by name (``outbox-<batch>.parquet``) when it
finishes a batch after a crash. Only files of batches already marked exported are merged (a batch still
pending is never rewritten), and the names of the merged files are kept in the partition's
``_compacted.json``; :func:`memberops.lake.writer.append` treats a name listed there as already written,
so no rewrite of a batch adds its rows again. Import files (``import-…``) are merged whatever their run:
an import dedupes by natural key against the lake's rows, not by file name.

Running compaction again is harmless: a partition with one file is left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select

from memberops.db.engine import Store
from memberops.db.outbox import OutboxRow
from memberops.errors import Invalid
from memberops.lake.registry import PARTITION_COLUMN, TABLES, TableSpec, table_spec
from memberops.lake.writer import COMPACTED_RECORD, TMP_DIR, compacted_stems, write_atomic

OUTBOX_PREFIX = "outbox-"
COMPACT_PREFIX = "compact-"

Exported = Callable[[set[str]], set[str]]
"""Given outbox batch ids, the ones marked exported."""


@dataclass
class CompactionResult:
    partitions: int = 0
    files_merged: int = 0
    files_written: int = 0
    rows: int = 0
    tables: dict[str, int] = field(default_factory=dict)  # table -> partitions compacted


def _batch_of(stem: str) -> str | None:
    return stem[len(OUTBOX_PREFIX):] if stem.startswith(OUTBOX_PREFIX) else None


def _mergeable(files: list[Path], exported: Exported) -> list[Path]:
    batches = {b for f in files if (b := _batch_of(f.stem))}
    done = exported(batches) if batches else set()
    return [f for f in files if (b := _batch_of(f.stem)) is None or b in done]


def _read_as(spec: TableSpec, path: Path) -> pa.Table:
    """A lake file in the registry schema; a column the file predates (the schema grew) is null."""
    table = pq.read_table(path)
    columns = [table[f.name] if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
               for f in spec.schema]
    return pa.Table.from_arrays(columns, schema=spec.schema.remove_metadata()).cast(spec.schema)


_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def exchange(a: Path, b: Path) -> None:
    """Swap two paths in one step (Linux ``renameat2`` with ``RENAME_EXCHANGE``)."""
    if _libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"cannot swap {a} and {b}: {os.strerror(errno)}")


def compact_partition(lake: Path, spec: TableSpec, partition: Path, exported: Exported) -> tuple[int, int]:
    """Merge ``partition``'s mergeable files into one; (files merged, rows). Nothing to do: (0, 0)."""
    files = sorted(partition.glob("*.parquet"))
    merge = _mergeable(files, exported)
    if len(merge) < 2:
        return 0, 0
    merged = pa.concat_tables([_read_as(spec, f) for f in merge])
    staging = lake / TMP_DIR / f"compact-{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    try:
        write_atomic(merged, staging / f"{COMPACT_PREFIX}{uuid.uuid4().hex}.parquet", lake)
        record = sorted(compacted_stems(partition) | {f.stem for f in merge if _batch_of(f.stem)})
        (staging / COMPACTED_RECORD).write_text(json.dumps(record), encoding="utf-8")
        merged_names = {f.name for f in merge}
        linked: set[str] = set()
        while True:  # files a writer adds meanwhile are linked in too
            new = [f for f in partition.glob("*.parquet") if f.name not in merged_names | linked]
            if not new:
                break
            for f in new:
                os.link(f, staging / f.name)
                linked.add(f.name)
        exchange(staging, partition)
        # ``staging`` now holds the old partition. A file that reached it after the last look moves over.
        for f in staging.glob("*.parquet"):
            if f.name not in merged_names and f.name not in linked:
                os.replace(f, partition / f.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return len(merge), merged.num_rows


def compact(lake: Path, exported: Exported, tables: Iterable[str] | None = None) -> CompactionResult:
    """Compact every partition of the fact ``tables`` (default: all); see the module docstring."""
    result = CompactionResult()
    specs = [table_spec(t) for t in tables] if tables else [s for s in TABLES.values() if not s.derived]
    for spec in specs:
        if spec.derived:
            raise Invalid(f"{spec.name} is derived: a snapshot is one file already, nothing to compact")
        root = lake / spec.name
        if not root.exists():
            continue
        for partition in sorted(root.glob(f"{PARTITION_COLUMN}=*")):
            merged, rows = compact_partition(lake, spec, partition, exported)
            if merged:
                result.partitions += 1
                result.files_merged += merged
                result.files_written += 1
                result.rows += rows
                result.tables[spec.name] = result.tables.get(spec.name, 0) + 1
    return result


def exported_in(store: Store) -> Exported:
    """The :data:`Exported` check of the outbox in ``store``."""

    def exported(batches: set[str]) -> set[str]:
        found: set[str] = set()
        ordered = sorted(batches)
        with store.read() as session:
            for start in range(0, len(ordered), 500):
                found.update(str(b) for b in session.scalars(
                    select(OutboxRow.batch_id).where(OutboxRow.batch_id.in_(ordered[start:start + 500]),
                                                     OutboxRow.exported_at.is_not(None)).distinct()
                ).all())
        return found

    return exported


def compact_lake(store: Store, lake: Path, tables: Iterable[str] | None = None) -> CompactionResult:
    """:func:`compact` with the outbox of ``store`` saying which batches are exported."""
    return compact(lake, exported_in(store), tables)
