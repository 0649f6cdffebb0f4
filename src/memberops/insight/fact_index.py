"""One member's rows of a lake table, in milliseconds: a key-sorted copy of the table beside the lake.

The 360° profile asks for a handful of rows (one member's orders, their lines and refunds, events, the
golden record) out of tables partitioned by day: the member's orders are spread over hundreds of small
files, and a scan opens every one (0.8–1.4 s on the demo brand). So each table the profile reads gets an
*index*: the columns it shows, sorted by the lookup key (``customer_key``, ``order_id``, ``member_id`` …)
and written in small row groups, under ``<lake>/_index/<table>/``. A lookup reads the row groups whose
key range holds a wanted key — usually one — with the footer's statistics kept in memory.

The index is a cache, never the record: it lists the partitions (folder, mtime, file names) it was built
from. A lookup also reads, with a filter, every file that appeared since (a live export, a new import, a
compaction's merged file); a row found on both paths is the same fact, and the profile keeps one per
natural key. When more than :data:`REBUILD_AFTER` files are new (or a derived table's snapshot was replaced) the
lookup rebuilds the index first
(written beside the old one and switched to by renaming its manifest, so a reader never sees half of it).

Plain Parquet reads (pyarrow), not a warehouse query: a point lookup is no analytical computation, and it
answers the same on every warehouse engine.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from memberops.identity.normalise import IDENTIFIER_TYPES
from memberops.lake.registry import PARTITION_COLUMN, table_spec
from memberops.lake.writer import DERIVED_DIR, TMP_DIR, table_dir

INDEX_DIR = "_index"
MANIFEST = "manifest.json"
ROW_GROUP = 512  # rows per row group: a lookup reads about one, and small groups decode in well under 1 ms
REBUILD_AFTER = 24  # files not in the index that a lookup reads before it rebuilds the index
SETTLED_SECONDS = 2.0  # a folder changed this close to the build may have changed within the same mtime tick


@dataclass(frozen=True)
class IndexedTable:
    """A lake table as the profile looks it up: by ``key`` (with ``channel`` when the table has one)."""

    table: str
    key: str
    columns: tuple[str, ...]

    @property
    def has_channel(self) -> bool:
        return "channel" in table_spec(self.table).schema.names

    @property
    def stored(self) -> list[str]:
        return list(dict.fromkeys(["workspace_id", self.key, *(["channel"] if self.has_channel else []), *self.columns]))


INDEXED = {spec.table: spec for spec in (
    IndexedTable("orders", "customer_key", ("order_id", "ordered_at", "status", "paid_amount", "currency", "store_id")),
    IndexedTable("refunds", "order_id", ("refund_id", "refunded_at", "amount")),
    IndexedTable("events", "customer_key", ("event_id", "type", "occurred_at", "properties")),
    IndexedTable("order_items", "order_id", ("line_no", "sku", "category", "quantity", "amount")),
    IndexedTable("identity_records", "source_id", IDENTIFIER_TYPES),
    IndexedTable("golden_records", "member_id", tuple(
        n for n in table_spec("golden_records").schema.names if n not in ("batch_id", "ingested_at"))),
)}


@dataclass
class _Index:
    """A loaded index: its file, each row group's key range, and the partitions it covers."""

    manifest_mtime: int
    path: Path | None
    file: pq.ParquetFile | None
    low: list[str]  # each row group's smallest key, in file order (keys are sorted)
    high: list[str]
    partitions: dict[str, tuple[int, frozenset[str]]]  # folder → (mtime_ns, file names)
    built_at: float


_LOADED: dict[tuple[str, str], _Index] = {}  # (lake, table) → index; files never change once written
_LOCK = threading.Lock()


def lookup(lake: Path, table: str, workspace_id: str, keys: Iterable[Any]) -> pa.Table:
    """The rows of ``table`` in ``workspace_id`` whose key is one of ``keys``: ``(channel, key)`` pairs for a
    table with channels, plain keys otherwise. Columns: :attr:`IndexedTable.stored`. A fact written both
    to the index and to a newer file (compaction) comes back twice; callers keep one per natural key."""
    spec = INDEXED[table]
    wanted = sorted(set(keys))
    empty = pa.schema([table_spec(table).schema.field(n) for n in spec.stored]).empty_table()
    if not wanted:
        return empty
    values = sorted({k[1] for k in wanted} if spec.has_channel else set(wanted))
    index, uncovered = _current(lake, spec)
    parts = [_from_index(index, spec, values)] if index.file is not None else []
    if uncovered:
        parts.append(_from_files(spec, uncovered, values))
    rows = pa.concat_tables([empty, *[p.select(spec.stored).cast(empty.schema) for p in parts]])
    mask = pc.and_(pc.equal(rows["workspace_id"], workspace_id), pc.is_in(rows[spec.key], pa.array(values)))
    rows = rows.filter(mask)
    if spec.has_channel and rows.num_rows:
        pairs = set(wanted)
        keep = [(c, k) in pairs for c, k in zip(rows["channel"].to_pylist(), rows[spec.key].to_pylist(), strict=True)]
        rows = rows.filter(pa.array(keep, pa.bool_()))
    return rows


def rebuild(lake: Path, table: str) -> None:
    """Build ``table``'s index from the files the lake holds now (also done by a lookup when it is stale)."""
    spec = INDEXED[table]
    with _LOCK:
        _build(lake, spec)
        _LOADED.pop((str(lake), table), None)


def refresh(lake: Path) -> list[str]:
    """Rebuild every index that misses a file the lake holds now; the tables rebuilt. Run after the work that
    writes many files (an import's compaction, insight's snapshot), so that the first profile a person opens
    does not pay for the rebuild."""
    rebuilt = []
    for spec in INDEXED.values():
        with _LOCK:
            if not _uncovered(lake, _load(lake, spec), spec.table):
                continue
            _build(lake, spec)
            _LOADED.pop((str(lake), spec.table), None)
        rebuilt.append(spec.table)
    return rebuilt


# -- reading ----------------------------------------------------------------------------------------


def _from_index(index: _Index, spec: IndexedTable, values: list[str]) -> pa.Table:
    assert index.file is not None
    groups = sorted({g for v in values for g in _groups_holding(index, v)})
    if not groups:
        return index.file.schema_arrow.empty_table()
    with _LOCK:  # one ParquetFile handle per index, shared by the threads serving requests
        return index.file.read_row_groups(groups, columns=spec.stored)


def _groups_holding(index: _Index, value: str) -> list[int]:
    """Row groups whose key range holds ``value`` (a key may span the end of one group and the next)."""
    found = []
    start = max(0, bisect_left(index.high, value))
    for group in range(start, len(index.low)):
        if index.low[group] > value:
            break
        found.append(group)
    return found


def _from_files(spec: IndexedTable, files: list[Path], values: list[str]) -> pa.Table:
    schema = table_spec(spec.table).schema  # files written before a column existed read it as nulls
    dataset = ds.dataset([str(f) for f in files], schema=schema, format="parquet")
    return dataset.to_table(columns=spec.stored, filter=ds.field(spec.key).isin(values))


# -- which index, and which files it lacks ---------------------------------------------------------


def _partitions(lake: Path, table: str) -> dict[str, int]:
    """The table's partition folders (relative to the lake) and their mtimes; a derived table has one."""
    spec = table_spec(table)
    base = table_dir(lake, spec)
    if spec.derived:
        try:
            return {str(base.relative_to(lake)): base.stat().st_mtime_ns}
        except FileNotFoundError:
            return {}
    try:
        entries = list(os.scandir(base))
    except FileNotFoundError:
        return {}
    return {f"{table}/{e.name}": e.stat().st_mtime_ns for e in entries
            if e.name.startswith(f"{PARTITION_COLUMN}=") and e.is_dir()}


def _files_in(lake: Path, folder: str) -> frozenset[str]:
    """The folder's Parquet files by name — and, in a derived table's folder, where a snapshot is replaced
    under the same name, by name and mtime (``name@mtime_ns``): a replaced file is a new one."""
    derived = folder.startswith(f"{DERIVED_DIR}/")
    try:
        return frozenset(f"{e.name}@{e.stat().st_mtime_ns}" if derived else e.name for e in os.scandir(lake / folder)
                         if e.name.endswith(".parquet") and e.is_file())
    except FileNotFoundError:
        return frozenset()


def _path(lake: Path, folder: str, entry: str) -> Path:
    return lake / folder / entry.split("@", 1)[0]


def _uncovered(lake: Path, index: _Index, table: str) -> list[Path]:
    """Files of ``table`` the index does not hold: in folders that changed since it was built."""
    missing: list[Path] = []
    for folder, mtime in _partitions(lake, table).items():
        known = index.partitions.get(folder)
        if known is not None and known[0] == mtime and mtime / 1e9 < index.built_at - SETTLED_SECONDS:
            continue
        names = _files_in(lake, folder) - (known[1] if known else frozenset())
        missing += [_path(lake, folder, name) for name in sorted(names)]
    return missing


def _is_stale(index: _Index, spec: IndexedTable, uncovered: list[Path]) -> bool:
    """Whether to rebuild before answering: no index yet, too many files outside it, or a derived table's
    snapshot replaced (its rows supersede the indexed ones rather than add to them)."""
    if not uncovered:
        return False
    return index.file is None or len(uncovered) > REBUILD_AFTER or table_spec(spec.table).derived


def _current(lake: Path, spec: IndexedTable) -> tuple[_Index, list[Path]]:
    index = _load(lake, spec)
    uncovered = _uncovered(lake, index, spec.table)
    if _is_stale(index, spec, uncovered):
        with _LOCK:
            index = _load(lake, spec)  # another thread may have rebuilt it meanwhile
            uncovered = _uncovered(lake, index, spec.table)
            if _is_stale(index, spec, uncovered):
                _build(lake, spec)
                _LOADED.pop((str(lake), spec.table), None)
        index = _load(lake, spec)
        uncovered = _uncovered(lake, index, spec.table)
    return index, uncovered


def _index_dir(lake: Path, table: str) -> Path:
    return lake / INDEX_DIR / table


def _load(lake: Path, spec: IndexedTable) -> _Index:
    manifest = _index_dir(lake, spec.table) / MANIFEST
    try:
        mtime = manifest.stat().st_mtime_ns
    except FileNotFoundError:
        return _Index(0, None, None, [], [], {}, 0.0)
    cached = _LOADED.get((str(lake), spec.table))
    if cached is not None and cached.manifest_mtime == mtime:
        return cached
    document = json.loads(manifest.read_text(encoding="utf-8"))
    path = manifest.parent / document["file"]
    file = pq.ParquetFile(path)
    column = file.schema_arrow.get_field_index(spec.key)
    low, high = [], []
    for group in range(file.metadata.num_row_groups):
        stats = file.metadata.row_group(group).column(column).statistics
        low.append(stats.min if stats is not None and stats.has_min_max else "")
        high.append(stats.max if stats is not None and stats.has_min_max else "\U0010ffff")
    partitions = {folder: (entry["mtime_ns"], frozenset(entry["files"])) for folder, entry in document["partitions"].items()}
    loaded = _Index(mtime, path, file, low, high, partitions, document["built_at"])
    _LOADED[(str(lake), spec.table)] = loaded
    return loaded


def _build(lake: Path, spec: IndexedTable) -> None:
    """Write a new index of every file the table holds now, then point the manifest at it."""
    built_at = time.time()
    partitions = {folder: (mtime, _files_in(lake, folder)) for folder, mtime in _partitions(lake, spec.table).items()}
    files = [_path(lake, folder, name) for folder, (_, names) in partitions.items() for name in sorted(names)]
    schema = table_spec(spec.table).schema
    rows = (ds.dataset([str(f) for f in files], schema=schema, format="parquet").to_table(columns=spec.stored)
            if files else schema.empty_table().select(spec.stored))
    rows = rows.filter(pc.invert(pc.is_null(rows[spec.key])))
    order = [(spec.key, "ascending"), *([("channel", "ascending")] if spec.has_channel else [])]
    rows = rows.sort_by(order)
    folder = _index_dir(lake, spec.table)
    folder.mkdir(parents=True, exist_ok=True)
    (lake / TMP_DIR).mkdir(parents=True, exist_ok=True)
    name = f"{uuid.uuid4().hex}.parquet"
    scratch = lake / TMP_DIR / f"index-{name}"
    pq.write_table(rows, scratch, row_group_size=ROW_GROUP, write_statistics=True)
    os.replace(scratch, folder / name)
    document = {"file": name, "built_at": built_at,
                "partitions": {f: {"mtime_ns": m, "files": sorted(n)} for f, (m, n) in partitions.items()}}
    manifest_scratch = lake / TMP_DIR / f"index-{name}.json"
    manifest_scratch.write_text(json.dumps(document), encoding="utf-8")
    os.replace(manifest_scratch, folder / MANIFEST)
    for old in folder.glob("*.parquet"):  # older indexes, once no reader can still be opening them
        if old.name != name and old.stat().st_mtime < built_at - 60:
            old.unlink(missing_ok=True)
