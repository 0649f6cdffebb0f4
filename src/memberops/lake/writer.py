"""Atomic, idempotent appends to the lake.

A file is written under ``<lake>/_tmp/``, flushed to disk, then renamed into its partition: a reader
sees a whole file or none, and a crash leaves at most an orphan in ``_tmp`` that :func:`sweep_tmp` removes.
File names are chosen by the caller from the load's identity (a batch id), so writing the same load
twice finds its file already there and writes nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from memberops.lake.registry import PARTITION_COLUMN, TableSpec

TMP_DIR = "_tmp"
COMPACTED_RECORD = "_compacted.json"  # a partition's names of files merged by compaction (lake/compact.py)


@dataclass(frozen=True)
class WrittenFile:
    path: Path
    rows: int
    is_new: bool


def partition_dir(lake: Path, spec: TableSpec, day: date) -> Path:
    return lake / spec.name / f"{PARTITION_COLUMN}={day.isoformat()}"


DERIVED_DIR = "derived"


def table_dir(lake: Path, spec: TableSpec) -> Path:
    return lake / DERIVED_DIR / spec.name if spec.derived else lake / spec.name


def table_glob(lake: Path, spec: TableSpec) -> str:
    if spec.derived:
        return str(table_dir(lake, spec) / "*.parquet")
    return str(lake / spec.name / f"{PARTITION_COLUMN}=*" / "*.parquet")


def compacted_stems(partition: Path) -> set[str]:
    """Names (without ``.parquet``) of the files compaction merged into ``partition``'s merged file."""
    record = partition / COMPACTED_RECORD
    if not record.exists():
        return set()
    return set(json.loads(record.read_text(encoding="utf-8")))


def has_files(lake: Path, spec: TableSpec) -> bool:
    pattern = "*.parquet" if spec.derived else f"{PARTITION_COLUMN}=*/*.parquet"
    return any(table_dir(lake, spec).glob(pattern))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(table: pa.Table, target: Path, lake: Path, *, replace: bool = False) -> bool:
    """Write ``table`` to ``target`` so that it appears whole or not at all.

    Without ``replace``, an existing ``target`` is left as it is and False returned (idempotent appends);
    with it, readers see the old file until the new one takes its place in one rename.
    """
    if target.exists() and not replace:
        return False
    tmp_dir = lake / TMP_DIR
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f"{uuid.uuid4().hex}.parquet"
    try:
        with open(tmp, "wb") as handle:
            pq.write_table(table, handle, compression="zstd")
            handle.flush()
            os.fsync(handle.fileno())
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return True


def split_by_day(table: pa.Table, column: str) -> list[tuple[date, pa.Table]]:
    """``table``'s rows grouped by the UTC date of ``column``: one sort and zero-copy slices, not a filter per day."""
    days = pc.cast(pc.cast(table[column], pa.timestamp("us", tz="UTC")), pa.date32())
    order = pc.sort_indices(days)
    ordered_days = days.take(order)
    ordered = table.take(order)
    runs = pc.run_end_encode(ordered_days).combine_chunks() if ordered_days.num_chunks else None
    if runs is None:
        return []
    parts: list[tuple[date, pa.Table]] = []
    start = 0
    for end, day in zip(runs.run_ends.to_pylist(), runs.values.to_pylist(), strict=True):
        parts.append((day, ordered.slice(start, end - start)))
        start = end
    return parts


def append(lake: Path, spec: TableSpec, table: pa.Table, file_stem: str) -> list[WrittenFile]:
    """Append ``table`` (of ``spec.schema``) to the lake, one file per day partition named ``file_stem``.

    Idempotent: appending the same rows under the same ``file_stem`` again writes nothing, also after
    compaction merged that file into another (the partition records the names it merged). Partitions are
    written in parallel (Parquet encoding releases the GIL).
    """
    if table.schema != spec.schema:
        table = table.select(spec.schema.names).cast(spec.schema)
    if table.num_rows == 0:
        return []
    if table[spec.partition_by].null_count:
        raise ValueError(f"{spec.name}: rows without {spec.partition_by} cannot be partitioned")
    parts = split_by_day(table, spec.partition_by)

    def write(part: tuple[date, pa.Table]) -> WrittenFile:
        day, rows = part
        partition = partition_dir(lake, spec, day)
        target = partition / f"{file_stem}.parquet"
        if file_stem in compacted_stems(partition):
            return WrittenFile(target, rows.num_rows, False)
        return WrittenFile(target, rows.num_rows, write_atomic(rows, target, lake))

    if len(parts) == 1:
        return [write(parts[0])]
    with ThreadPoolExecutor(max_workers=min(len(parts), os.cpu_count() or 1)) as pool:
        return list(pool.map(write, parts))


def replace_snapshot(lake: Path, spec: TableSpec, workspace_id: str, table: pa.Table) -> Path:
    """Replace a derived table's snapshot for one workspace, atomically."""
    if not spec.derived:
        raise ValueError(f"{spec.name} is a fact table: facts are appended, never replaced")
    table = table.select(spec.schema.names).cast(spec.schema)
    target = table_dir(lake, spec) / f"{workspace_id}.parquet"
    write_atomic(table, target, lake, replace=True)
    return target


def sweep_tmp(lake: Path, older_than_seconds: float = 3600) -> int:
    """Remove files (and scratch folders) a crashed writer left in ``_tmp``; none was ever visible to a reader.

    Only entries older than ``older_than_seconds`` go, so a writer still at work keeps its file.
    """
    tmp_dir = lake / TMP_DIR
    if not tmp_dir.exists():
        return 0
    cutoff = time.time() - older_than_seconds
    removed = 0
    for orphan in tmp_dir.iterdir():
        if orphan.stat().st_mtime < cutoff:
            if orphan.is_dir():
                shutil.rmtree(orphan, ignore_errors=True)
            else:
                orphan.unlink(missing_ok=True)
            removed += 1
    return removed
