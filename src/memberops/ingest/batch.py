"""Batch import: a channel's file → validated canonical facts in the lake, bad rows in quarantine.

The whole file is processed by DuckDB in a few set-based statements (no Python per row):

1. **stage** — read every row as text, compute each canonical field's typed value, the reasons to refuse
   the row and the warnings for dropped optional fields (``ingest/transform.py``);
2. **dedupe** — keep the first row of each natural key within the file, and drop keys the lake already
   holds for the channel (customers: the same record content), so re-importing changes nothing;
3. **write** — ``COPY`` the accepted rows as day-partitioned Parquet into a scratch folder, then rename
   each file into the lake (a reader sees whole files only);
4. **record** — the import run, its counts and its quarantined rows, in one state-store transaction.

Facts keyed by one column (orders, refunds, events) take a shorter road when they can: steps 1–3 are
one ``COPY`` from the file's scan to Parquet files partitioned by verdict and day, without holding the
file's rows anywhere (:meth:`_Importer.stream`); only a key seen twice in the file sends it back to
staging. That road costs about what DuckDB's own ``COPY`` of the file to Parquet costs, plus the
partitioning and the checks; staging costs about twice as much.

A crash before 4 leaves the run unfinished; importing the file again redoes it, and step 2 drops the
rows whose files already reached the lake. Memory is bounded by DuckDB's ``memory_limit``; it spills to
the data dir beyond that.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from sqlalchemy import insert, select

from memberops.accounts.models import Workspace
from memberops.db.base import utcnow
from memberops.errors import Invalid
from memberops.identity.normalise import normalise_phone
from memberops.ids import new_id
from memberops.ingest.canonical import CONSENT_CHANNELS, CUSTOMERS, KINDS, RecordKind
from memberops.ingest.mapping import Mapping, resolve_mapping
from memberops.ingest.models import ImportRun, QuarantinedRow
from memberops.ingest.sources import REJECT_SCANS, REJECTS_TABLE, Source, file_sha256, open_source
from memberops.ingest.transform import (
    LAKE_SQL_TYPES,
    PHONE_FUNCTION,
    REASON_SEPARATOR,
    FieldPlan,
    checked_value,
    ident,
    literal,
    plan_fields,
    reasons_sql,
    warnings_sql,
)
from memberops.lake.registry import PARTITION_COLUMN, table_spec
from memberops.lake.writer import TMP_DIR, has_files, table_glob
from memberops.runtime import Context

Progress = Callable[[str, float | None], None]
"""Called as ``progress(phase, fraction_done_or_None)`` while an import runs."""

QUARANTINE_INSERT_CHUNK = 5_000


class UnknownKind(Invalid):
    code = "unknown_kind"


class MissingColumns(Invalid):
    """The file has no column at all for a required field: nothing could be imported, so nothing is."""

    code = "missing_columns"


@dataclass
class ImportSummary:
    """What became of a file's rows. ``read`` = accepted + quarantined + duplicates."""

    import_id: str
    file: str
    kind: str
    channel: str
    read: int = 0
    accepted: int = 0
    accepted_with_warnings: int = 0
    quarantined: int = 0
    duplicates_in_file: int = 0
    duplicates_existing: int = 0
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    warnings_by_field: dict[str, int] = field(default_factory=dict)
    unknown_columns: list[str] = field(default_factory=list)
    already_imported: bool = False

    @property
    def duplicates(self) -> int:
        return self.duplicates_in_file + self.duplicates_existing

    def counts(self) -> dict[str, Any]:
        return {
            "read": self.read, "accepted": self.accepted, "accepted_with_warnings": self.accepted_with_warnings,
            "quarantined": self.quarantined, "duplicates_in_file": self.duplicates_in_file,
            "duplicates_existing": self.duplicates_existing, "quarantined_by_reason": self.quarantined_by_reason,
            "warnings_by_field": self.warnings_by_field, "unknown_columns": self.unknown_columns,
        }


@dataclass
class Streamed:
    """A file written in one pass: the scratch files and row counts per verdict."""

    ACCEPTED = ("ok", "warn")
    VALID = ("ok", "warn", "existing", "existing_warn")
    FLAGGED = ("bad", "warn", "existing_warn")

    files: dict[str, list[Path]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, *verdicts: str) -> int:
        return sum(self.counts.get(v, 0) for v in verdicts)


def kind_named(name: str) -> RecordKind:
    try:
        return KINDS[name]
    except KeyError:
        raise UnknownKind(f"unknown kind {name!r}; accepted: {', '.join(KINDS)}", kind=name) from None


def _mapping_sha(mapping: Mapping) -> str:
    return hashlib.sha256(json.dumps(mapping.model_dump(), sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _phone_udf(values: pa.Array, regions: pa.Array) -> pa.Array:
    """libphonenumber over a vector; each distinct (value, region) is parsed once (``normalise_phone`` caches)."""
    return pa.array(
        [None if v is None else normalise_phone(v, r or "CN") for v, r in zip(values.to_pylist(), regions.to_pylist(), strict=True)],
        pa.string(),
    )


def utc_day(timestamp: str) -> str:
    """SQL for the UTC date of a TIMESTAMPTZ, by arithmetic on its epoch: a time-zone-aware cast to DATE
    goes through ICU's calendar for every row and costs a fifth of the whole write."""
    return f"(DATE '1970-01-01' + CAST(fdiv(epoch_us({timestamp}), 86400000000) AS INTEGER))"


def _memory_limit_mb() -> int:
    """40% of the machine's memory (at least 1 GB): an import never takes the whole machine."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 4096
    return max(1024, int(total * 0.4) // (1 << 20))


class _Importer:
    """One file's import on its own DuckDB connection."""

    def __init__(self, context: Context, workspace: Workspace, kind: RecordKind, channel: str, mapping: Mapping,
                 source: Source, run_id: str, scratch: Path, progress: Progress | None) -> None:
        self.context = context
        self.workspace = workspace
        self.kind = kind
        self.channel = channel
        self.mapping = mapping
        self.source = source
        self.run_id = run_id
        self.scratch = scratch
        self.progress = progress
        self.spec = table_spec(kind.lake_table)
        self.now = datetime.now(UTC)
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute(f"SET temp_directory = {literal(str(scratch / 'spill'))}")
        # bounded, with room to work: DuckDB spills to the data dir beyond this
        self.con.execute(f"SET memory_limit = '{_memory_limit_mb()}MB'")
        self.con.create_function(PHONE_FUNCTION, _phone_udf, ["varchar", "varchar"], "varchar", type="arrow",
                                 null_handling="special", side_effects=False)  # type: ignore[call-overload]

    def run_sql(self, phase: str, sql: str) -> Any:
        """Run one statement, reporting DuckDB's own progress for long ones."""
        if self.progress is None:
            return self.con.execute(sql)
        done = threading.Event()
        result: dict[str, Any] = {}

        def work() -> None:
            try:
                result["value"] = self.con.execute(sql)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                result["error"] = exc
            finally:
                done.set()

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        while not done.wait(0.2):
            percent = self.con.query_progress()
            self.progress(phase, percent / 100 if percent and percent > 0 else None)
        if "error" in result:
            raise result["error"]
        self.progress(phase, 1.0)
        return result["value"]

    def source_columns(self) -> list[str]:
        if self.source.format == "jsonl":
            rows = self.con.execute(
                f"SELECT DISTINCT unnest(json_keys(line)) FROM (SELECT line FROM {self.source.relation()} "
                "WHERE json_valid(line) LIMIT 1000)"
            ).fetchall()
            return sorted(r[0] for r in rows)
        return [d[0] for d in self.con.execute(f"DESCRIBE SELECT * FROM {self.source.relation()}").fetchall()]

    # -- 1. read and judge ---------------------------------------------------------------------------
    def prepare(self) -> list[FieldPlan]:
        """What the file has: its columns, the plan reading each canonical field, its unknown columns."""
        self.columns = self.source_columns()
        plans = plan_fields(self.kind, self.mapping, set(self.columns), self.source.column_text)
        absent = [p.field.name for p in plans if p.field.required and p.raw is None]
        if absent and self.source.format != "jsonl":
            wanted = ", ".join(f"{name} (column {self.mapping.columns.get(name, name)!r})" for name in absent)
            raise MissingColumns(
                f"{self.source.original.name}: no column for the required {wanted}; the file has: "
                f"{', '.join(self.columns)}. Pass --mapping to name them.", missing=absent,
            )
        mapped_columns = {p.source_column for p in plans if p.source_column}
        self.unknown = sorted(set(self.columns) - mapped_columns - {"_quarantine_id", "_row", "_reason"})
        return plans

    def judged_sql(self, plans: list[FieldPlan], *, relation: str | None = None, numbered: bool = False,
                   only: str | None = None) -> str:
        """A query over the file's readable rows: the lake columns (typed; all but the constant ones),
        ``_reasons`` ('' when accepted), ``_warnings`` and, for refused rows, ``_raw`` (the row as read).

        ``numbered`` adds ``_row``, the row's position among the file's readable rows; ``only`` (a
        condition over the fields' raw texts ``r_<field>``) judges only the rows it holds for.
        """
        present = [p for p in plans if p.raw is not None]
        source_cols = ", ".join(f"{p.source} AS s_{p.field.name}" for p in plans if p.source is not None) or "NULL AS s__none"
        raw_cols = ", ".join(f"{p.raw} AS r_{p.field.name}" for p in present) or "NULL AS r__none"
        parsed_cols = ", ".join(f"{p.parsed} AS p0_{p.field.name}" for p in present) or "NULL AS p0__none"
        checked_cols = ", ".join(f"{checked_value(p.field, 'p0_' + p.field.name)} AS p_{p.field.name}"
                                 for p in present) or "NULL AS p__none"
        if self.source.format == "jsonl":
            raw_json = "line"
            checks = "CASE WHEN NOT json_valid(line) THEN 'malformed JSON line' ELSE '' END"
        else:
            raw_json = f"to_json(struct_pack({', '.join(f'{ident(c)} := {ident(c)}' for c in self.columns)}))::VARCHAR"
            checks = "''"
        if self.source.encoding not in ("utf-8", "binary") and present:
            mapped = ", ".join(f"coalesce(r_{p.field.name}, '')" for p in present)
            checks = f"CASE WHEN strpos(concat({mapped}), '\ufffd') > 0 THEN 'invalid text encoding' ELSE {checks} END"
        quarantine_id = ""
        if "_quarantine_id" in self.columns:
            quarantine_id = f"TRY_CAST({self.source.column_text('_quarantine_id', False)} AS BIGINT) AS _quarantine_id, "
        row = "row_number() OVER () AS _row, " if numbered else ""
        return f"""
            WITH sourced AS (SELECT *, {row}{source_cols} FROM {relation or self.source.relation()}),
            typed AS (SELECT *, {raw_cols} FROM sourced{f" WHERE {only}" if only else ""}),
            parsed AS (SELECT *, {parsed_cols} FROM typed),
            checked AS (SELECT *, {checked_cols}, {checks} AS _checks FROM parsed),
            judged AS (
                SELECT *, CASE WHEN _checks <> '' THEN _checks ELSE {reasons_sql(self.kind, plans)} END AS _reasons,
                       {warnings_sql(plans)} AS _warnings
                FROM checked
            )
            SELECT {quarantine_id}{self._lake_columns(plans)}, _reasons, _warnings,
                   CASE WHEN _reasons <> '' THEN {raw_json} END AS _raw{", _row" if numbered else ""}
            FROM judged
        """

    def stage(self, plans: list[FieldPlan]) -> None:
        """Keep every row of the file, judged, in ``staged``.

        ``staged`` keeps the file's order (DuckDB preserves insertion order), so a row's ``rowid`` + 1 is
        its position among the file's readable rows: no window over the whole file is needed to number them.
        """
        self.run_sql("reading", f"CREATE TEMP TABLE staged AS {self.judged_sql(plans)}")
        if self.kind.name == "order-items":
            # lines without a number are numbered in file order within their order
            self.con.execute("""
                UPDATE staged SET line_no = numbered.n FROM (
                    SELECT rowid AS rid, row_number() OVER (PARTITION BY order_id ORDER BY rowid) AS n
                    FROM staged WHERE _reasons = ''
                ) numbered WHERE staged.rowid = numbered.rid AND staged.line_no IS NULL
            """)

    # -- 2. dedupe ----------------------------------------------------------------------------------
    def _lake_value(self, plans: list[FieldPlan], name: str) -> str:
        """SQL for the lake column ``name`` from the staged row."""
        by_name = {p.field.name: p for p in plans}
        if self.kind is CUSTOMERS and name == "consents":
            present = [c for c in CONSENT_CHANNELS if by_name[f"consent_{c}"].parsed is not None]
            if not present:
                return "NULL"
            pairs = ", ".join(f"{literal(c)}, p_consent_{c}" for c in present)
            return f"CAST(json_object({pairs}) AS VARCHAR)"
        if self.kind is CUSTOMERS and name == "record_hash":
            parts = [f"coalesce(CAST(p_{p.field.name} AS VARCHAR), '')" for p in plans if p.parsed is not None]
            return f"md5(concat_ws('\x1f', {', '.join(parts)}))" if parts else "NULL"
        plan = by_name.get(name)
        if plan is None or plan.parsed is None:
            return "NULL"
        return f"p_{name}"

    CONSTANT_COLUMNS = ("workspace_id", "batch_id", "ingested_at", "channel", "member_id")

    def _lake_columns(self, plans: list[FieldPlan]) -> str:
        """The SELECT list turning a judged row into the lake table's columns, typed — all but the ones
        that are the same on every row of the import (added when writing: an in-memory table would
        store them once per row)."""
        types = {f.name: LAKE_SQL_TYPES[f.type] for f in self.kind.fields}
        types.update({"consents": "VARCHAR", "record_hash": "VARCHAR"})
        return ", ".join(f"CAST({self._lake_value(plans, f.name)} AS {types[f.name]}) AS {ident(f.name)}"
                         for f in self.spec.schema if f.name not in self.CONSTANT_COLUMNS)

    def _constant_value(self, name: str) -> str:
        return {
            "workspace_id": literal(self.workspace.id), "batch_id": literal(self.run_id),
            "ingested_at": f"TIMESTAMPTZ {literal(self.now.isoformat())}", "channel": literal(self.channel),
            "member_id": "CAST(NULL AS VARCHAR)",
        }[name]

    def dedupe(self, plans: list[FieldPlan]) -> tuple[int, int]:
        """Make ``accepted``: valid rows, the first of each key in the file, none the lake already has.

        When nothing needs dropping, ``accepted`` is a view over ``staged``: no copy of the file's rows.
        """
        key = list(self.kind.natural_key) + (["record_hash"] if self.kind is CUSTOMERS else [])
        key_sql = ", ".join(ident(k) for k in key)
        valid_rows = "SELECT *, rowid + 1 AS _row FROM staged WHERE _reasons = ''"
        valid = self.con.execute(f"SELECT count(*) FROM ({valid_rows})").fetchone()[0]  # type: ignore[index]
        unique = self.con.execute(
            f"SELECT count(*) FROM (SELECT DISTINCT {key_sql} FROM ({valid_rows}))").fetchone()[0]  # type: ignore[index]
        first_of_each = valid_rows if unique == valid else (
            f"SELECT * FROM ({valid_rows}) QUALIFY row_number() OVER (PARTITION BY {key_sql} ORDER BY _row) = 1")
        existing = 0
        known = self._known_keys(key)
        if known is not None:
            matches = " AND ".join(f"a.{ident(k)} IS NOT DISTINCT FROM l.{ident(k)}" for k in key)
            self.run_sql("checking duplicates", f"""
                CREATE TEMP TABLE accepted AS
                SELECT a.* FROM ({first_of_each}) a ANTI JOIN ({known}) l ON {matches}
            """)
            existing = unique - self.con.execute("SELECT count(*) FROM accepted").fetchone()[0]  # type: ignore[index]
        else:
            self.con.execute(f"CREATE TEMP VIEW accepted AS {first_of_each}")
        return valid - unique, existing

    def _known_keys(self, key: list[str]) -> str | None:
        """SQL for the distinct keys the lake already holds for this workspace and channel (None: no lake yet)."""
        if not has_files(self.context.settings.lake_path, self.spec):
            return None
        glob = literal(table_glob(self.context.settings.lake_path, self.spec))
        return (f"SELECT DISTINCT {', '.join(ident(k) for k in key)} FROM read_parquet({glob}, union_by_name = true) "
                f"WHERE workspace_id = {literal(self.workspace.id)} AND channel = {literal(self.channel)}")

    def _has_quarantine_id(self) -> bool:
        return any(c[0] == "_quarantine_id" for c in self.con.execute("DESCRIBE staged").fetchall())

    # -- the one-pass path ----------------------------------------------------------------------------
    def can_stream(self, plans: list[FieldPlan]) -> bool:
        """Whether the file can go to the lake in one pass (:meth:`stream`): facts keyed by one column.

        Customers (keyed by their content), order items (numbered in file order) and retry files (which
        resolve quarantine entries row by row) take the staged path.
        """
        key = self.kind.natural_key
        return (self.kind is not CUSTOMERS and self.kind.name != "order-items" and len(key) == 1
                and any(p.field.name == key[0] and p.raw is not None for p in plans)
                and "_quarantine_id" not in self.columns)

    STREAM_DIR = "stream"

    def stream(self, plans: list[FieldPlan]) -> Streamed | None:
        """Judge and write the file in one pass; None when it has to take the staged path after all.

        Staging materialises every row of the file in its order (to number rows and find the first of
        each key) and then copies it again to Parquet; on a large file that costs as much as reading
        it. Here one ``COPY`` reads the file, judges each row and writes it to a scratch folder
        partitioned by its verdict (``ok``, ``warn``: accepted; ``bad``: quarantined; ``existing``,
        ``existing_warn``: a key the lake already has) and by day; the accepted files are then renamed
        into the lake. Two things need the file's order, and both are rare, so both are checked after:

        - a key twice among the accepted rows (the first in the file wins): the file is staged instead;
        - the quarantined rows and the rows with warnings, with their positions: the file is read once
          more for just those rows, found by their key (or by having none) — a scan, no parsing of the
          other rows.
        """
        key = self.kind.natural_key[0]
        out = self.scratch / self.STREAM_DIR
        columns = ", ".join(
            f"{self._constant_value(f.name)} AS {ident(f.name)}" if f.name in self.CONSTANT_COLUMNS
            else f"judged.{ident(f.name)}" for f in self.spec.schema)
        known = self._known_keys([key])
        in_lake = f"known.{ident(key)} IS NOT NULL" if known else "false"
        join = f"LEFT JOIN ({known}) known ON judged.{ident(key)} = known.{ident(key)}" if known else ""
        verdict = (f"CASE WHEN judged._reasons <> '' THEN 'bad' "
                   f"WHEN {in_lake} THEN (CASE WHEN judged._warnings <> '' THEN 'existing_warn' ELSE 'existing' END) "
                   f"WHEN judged._warnings <> '' THEN 'warn' ELSE 'ok' END")
        partition_time = (self._constant_value(self.spec.partition_by) if self.spec.partition_by in self.CONSTANT_COLUMNS
                          else f"judged.{ident(self.spec.partition_by)}")
        written = self.run_sql("reading", f"""
            COPY (
                SELECT {columns}, {verdict} AS _verdict,
                       CASE WHEN judged._reasons = '' THEN {utc_day(partition_time)} END AS {PARTITION_COLUMN}
                FROM ({self.judged_sql(plans)}) judged {join}
            ) TO {literal(str(out))} (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (_verdict, {PARTITION_COLUMN}),
                                      FILENAME_PATTERN {literal('import-' + self.run_id + '-{i}')}, RETURN_STATS true)
        """).fetchall()
        streamed = Streamed()
        for filename, count, *_, partition in written:
            streamed.files.setdefault(partition["_verdict"], []).append(Path(filename))
            streamed.counts[partition["_verdict"]] = streamed.counts.get(partition["_verdict"], 0) + int(count)
        valid_files = [str(f) for v in Streamed.VALID for f in streamed.files.get(v, [])]
        if valid_files:
            valid, unique = self.con.execute(
                f"SELECT count(*), count(DISTINCT {ident(key)}) FROM read_parquet({valid_files})").fetchone()  # type: ignore[misc]
            if valid != unique:
                return None
        flagged_files = [str(f) for v in Streamed.FLAGGED for f in streamed.files.get(v, [])]
        self.con.execute("CREATE OR REPLACE TEMP TABLE flagged (_row BIGINT, _reasons VARCHAR, _warnings VARCHAR, _raw VARCHAR)")
        if flagged_files:
            self.con.execute(f"""
                CREATE OR REPLACE TEMP TABLE flagged_keys AS
                SELECT DISTINCT {ident(key)} AS k FROM read_parquet({flagged_files}) WHERE {ident(key)} IS NOT NULL
            """)
            rescan = self.source.relation(REJECTS_TABLE + "_again", REJECT_SCANS + "_again")
            judged = self.judged_sql(plans, relation=rescan, numbered=True,
                                     only=f"r_{key} IS NULL OR r_{key} IN (SELECT k FROM flagged_keys)")
            self.run_sql("collecting quarantined rows", f"""
                INSERT INTO flagged SELECT _row, _reasons, _warnings, _raw FROM ({judged})
                WHERE _reasons <> '' OR _warnings <> ''
            """)
        bad, warned = self.con.execute(
            "SELECT count(*) FILTER (_reasons <> ''), count(*) FILTER (_reasons = '') FROM flagged").fetchone()  # type: ignore[misc]
        if (bad, warned) != (streamed.counts.get("bad", 0),
                             streamed.counts.get("warn", 0) + streamed.counts.get("existing_warn", 0)):
            return None  # cannot happen (both passes judge alike); staging is the answer that is surely right
        return streamed

    def abandon_stream(self) -> None:
        """Forget a :meth:`stream` attempt before staging the file: its scratch files and its rejects."""
        shutil.rmtree(self.scratch / self.STREAM_DIR, ignore_errors=True)
        if self.source.format != "parquet":
            self.con.execute(f"DELETE FROM {REJECTS_TABLE}")

    def publish_streamed(self, streamed: Streamed) -> int:
        """Rename the accepted files of a :meth:`stream` into the lake's day partitions."""
        lake = self.context.settings.lake_path
        moved = 0
        for verdict in Streamed.ACCEPTED:
            for file in streamed.files.get(verdict, []):
                target = lake / self.spec.name / file.parent.name / f"{file.stem}-{verdict}.parquet"
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(file, target)  # scratch is inside the lake's filesystem: a rename, atomic
                moved += 1
        return moved

    # -- 3. write -----------------------------------------------------------------------------------
    def write(self) -> int:
        out = self.scratch / "out"
        lake = self.context.settings.lake_path
        columns = ", ".join(
            f"{self._constant_value(f.name)} AS {ident(f.name)}" if f.name in self.CONSTANT_COLUMNS else ident(f.name)
            for f in self.spec.schema)
        partition_time = (self._constant_value(self.spec.partition_by) if self.spec.partition_by in self.CONSTANT_COLUMNS
                          else ident(self.spec.partition_by))
        self.run_sql("writing", f"""
            COPY (SELECT {columns}, {utc_day(partition_time)} AS {PARTITION_COLUMN} FROM accepted)
            TO {literal(str(out))} (FORMAT parquet, COMPRESSION zstd, PARTITION_BY ({PARTITION_COLUMN}),
                                    FILENAME_PATTERN {literal('import-' + self.run_id + '-{i}')},
                                    OVERWRITE_OR_IGNORE true)
        """)
        moved = 0
        if not out.exists():
            return 0
        for file in sorted(out.glob(f"{PARTITION_COLUMN}=*/*.parquet")):
            target = lake / self.spec.name / file.parent.name / file.name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(file, target)  # scratch is inside the lake's filesystem: a rename, atomic
            moved += 1
        return moved

    # -- counts and quarantine ----------------------------------------------------------------------
    def rejects(self) -> list[tuple[int, str, str]]:
        if self.source.format == "parquet":
            return []
        rows = self.con.execute(
            f"SELECT line, error_type, csv_line FROM {REJECTS_TABLE} ORDER BY line"
        ).fetchall()
        return [(int(line), f"unreadable line: {str(kind).lower()}", str(text)) for line, kind, text in rows]

    def close(self) -> None:
        self.con.close()


def import_file(
    context: Context, workspace: Workspace, *, kind_name: str, path: Path, channel: str,
    mapping_file: Path | None = None, file_format: str | None = None, progress: Progress | None = None,
    mapping: Mapping | None = None,
) -> ImportSummary:
    """Import one file of ``kind_name`` records from ``channel`` into the lake; bad rows to quarantine.

    Idempotent: the same file with the same mapping is recognised and skipped; overlapping files add only
    the natural keys the lake does not hold yet (for customers: only records whose content changed).

    Examples:
        >>> summary = import_file(context, workspace, kind_name="orders", path=Path("tmall.csv"),
        ...                       channel="tmall")  # doctest: +SKIP
    """
    kind = kind_named(kind_name)
    if mapping is None:
        mapping = resolve_mapping(channel, kind.name, mapping_file)
    mapping_sha = _mapping_sha(mapping)
    # The file's hash (which recognises a repeated import) is computed while DuckDB reads the file.
    with ThreadPoolExecutor(max_workers=1) as pool:
        sha_future = pool.submit(file_sha256, path)
        run_id = new_id()
        lake_tmp = context.settings.lake_path / TMP_DIR
        lake_tmp.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f"import-{run_id}-", dir=lake_tmp))
        importer: _Importer | None = None
        try:
            source = open_source(path, file_format, mapping, scratch)
            importer = _Importer(context, workspace, kind, channel, mapping, source, run_id, scratch, progress)
            plans = importer.prepare()
            streamed = None
            if importer.can_stream(plans):
                streamed = importer.stream(plans)
                if streamed is None:
                    importer.abandon_stream()
            if streamed is None:
                importer.stage(plans)
            sha = sha_future.result()
            done = _finished_run(context, workspace, kind, channel, sha, mapping_sha)
            if done is not None:
                summary = ImportSummary(done.id, path.name, kind.name, channel, already_imported=True)
                summary.duplicates_existing = int(done.counts.get("accepted", 0))
                summary.read = summary.duplicates_existing
                return summary
            with context.store.transaction() as session:
                session.add(ImportRun(id=run_id, workspace_id=workspace.id, kind=kind.name, channel=channel,
                                      file_name=path.name, file_sha256=sha, mapping=mapping.model_dump(),
                                      mapping_sha256=mapping_sha))
            summary = ImportSummary(run_id, path.name, kind.name, channel, unknown_columns=importer.unknown)
            if streamed is not None:
                return _finish_streamed(context, workspace, importer, streamed, summary)
            return _finish(context, workspace, importer, plans, summary)
        except BaseException:
            _mark_failed(context, run_id)
            raise
        finally:
            if importer is not None:
                importer.close()
            shutil.rmtree(scratch, ignore_errors=True)


def _finished_run(context: Context, workspace: Workspace, kind: RecordKind, channel: str, sha: str,
                  mapping_sha: str) -> ImportRun | None:
    with context.store.read() as session:
        return session.scalar(
            select(ImportRun).where(
                ImportRun.workspace_id == workspace.id, ImportRun.kind == kind.name, ImportRun.channel == channel,
                ImportRun.file_sha256 == sha, ImportRun.mapping_sha256 == mapping_sha, ImportRun.status == "done",
            ).order_by(ImportRun.started_at.desc()).limit(1)
        )


def _mark_failed(context: Context, run_id: str) -> None:
    with context.store.transaction() as session:
        failed = session.get(ImportRun, run_id)
        if failed is not None:
            failed.status = "failed"
            failed.finished_at = utcnow()


def _finish(context: Context, workspace: Workspace, importer: _Importer, plans: list[FieldPlan],
            summary: ImportSummary) -> ImportSummary:
    """Dedupe, write, count and record an import whose file is staged."""
    summary.duplicates_in_file, summary.duplicates_existing = importer.dedupe(plans)
    importer.write()
    con = importer.con
    summary.accepted = con.execute("SELECT count(*) FROM accepted").fetchone()[0]  # type: ignore[index]
    summary.accepted_with_warnings = con.execute(
        "SELECT count(*) FROM accepted WHERE _warnings <> ''"
    ).fetchone()[0]  # type: ignore[index]
    quarantined = con.execute(
        "SELECT rowid + 1, _reasons, _raw FROM staged WHERE _reasons <> '' ORDER BY rowid"
    ).fetchall()
    _count_reasons(importer, summary, "staged", quarantined)
    retried = _retried_rows(importer) if importer._has_quarantine_id() else None
    _record(context, workspace, summary.import_id, summary, quarantined, importer.rejects(), retried)
    return summary


def _finish_streamed(context: Context, workspace: Workspace, importer: _Importer, streamed: Streamed,
                     summary: ImportSummary) -> ImportSummary:
    """Publish, count and record an import written in one pass (:meth:`_Importer.stream`)."""
    importer.publish_streamed(streamed)
    summary.accepted = streamed.count(*Streamed.ACCEPTED)
    summary.accepted_with_warnings = streamed.count("warn")
    summary.duplicates_existing = streamed.count("existing", "existing_warn")
    quarantined = importer.con.execute(
        "SELECT _row, _reasons, _raw FROM flagged WHERE _reasons <> '' ORDER BY _row").fetchall()
    _count_reasons(importer, summary, "flagged", quarantined)
    _record(context, workspace, summary.import_id, summary, quarantined, importer.rejects(), None)
    return summary


def _count_reasons(importer: _Importer, summary: ImportSummary, table: str,
                   quarantined: list[tuple[int, str, str]]) -> None:
    """Warnings by field (over every valid row), quarantined rows by reason (file rows and rejected lines)
    and the totals, from ``table``'s ``_reasons`` and ``_warnings``."""
    con = importer.con
    summary.warnings_by_field = dict(con.execute(
        f"SELECT w, count(*) FROM (SELECT unnest(string_split(_warnings, '{REASON_SEPARATOR}')) AS w "
        f"FROM {table} WHERE _reasons = '' AND _warnings <> '') "
        "GROUP BY w ORDER BY w"
    ).fetchall())
    rejected = importer.rejects()
    by_reason = dict(con.execute(
        f"SELECT r, count(*) FROM (SELECT unnest(string_split(_reasons, '{REASON_SEPARATOR}')) AS r FROM {table} "
        "WHERE _reasons <> '') GROUP BY r ORDER BY r"
    ).fetchall())
    for _, reason, _ in rejected:
        by_reason[reason] = by_reason.get(reason, 0) + 1
    summary.quarantined_by_reason = by_reason
    summary.quarantined = len(quarantined) + len(rejected)
    summary.read = summary.accepted + summary.quarantined + summary.duplicates


def _retried_rows(importer: _Importer) -> dict[str, list[int]]:
    """For a retry file: which quarantined rows now went in (or were already in) and which failed again."""
    con = importer.con
    ok = [r[0] for r in con.execute(
        "SELECT _quarantine_id FROM staged WHERE _reasons = '' AND _quarantine_id IS NOT NULL").fetchall()]
    failed = [r[0] for r in con.execute(
        "SELECT _quarantine_id FROM staged WHERE _reasons <> '' AND _quarantine_id IS NOT NULL").fetchall()]
    return {"resolved": ok, "failed": failed}


def _record(
    context: Context, workspace: Workspace, run_id: str, summary: ImportSummary,
    quarantined: list[tuple[int, str, str]], rejected: list[tuple[int, str, str]],
    retried: dict[str, list[int]] | None,
) -> None:
    """Write the run's outcome and its quarantined rows in one transaction."""
    from sqlalchemy import update

    rows: list[dict[str, Any]] = [
        {"workspace_id": workspace.id, "import_id": run_id, "row_number": int(row), "reason": reason[:200],
         "raw": _raw_record(raw), "status": "open",
         "created_at": utcnow()}
        for row, reason, raw in quarantined
    ]
    rows += [
        {"workspace_id": workspace.id, "import_id": run_id, "row_number": line, "reason": reason[:200],
         "raw": {"line": text}, "status": "open", "created_at": utcnow()}
        for line, reason, text in rejected
    ]
    with context.store.transaction() as session:
        if retried is not None:
            # rows of an earlier run fixed by the operator: resolved ones close, failing ones stay open
            if retried["resolved"]:
                session.execute(update(QuarantinedRow).where(
                    QuarantinedRow.id.in_(retried["resolved"]), QuarantinedRow.workspace_id == workspace.id,
                ).values(status="resolved"))
            rows = [r for r in rows if not _is_retry_of_open(r)]
        for start in range(0, len(rows), QUARANTINE_INSERT_CHUNK):
            session.execute(insert(QuarantinedRow), rows[start:start + QUARANTINE_INSERT_CHUNK])
        run = session.get(ImportRun, run_id)
        assert run is not None
        run.status = "done"
        run.counts = summary.counts()
        run.finished_at = utcnow()


def _raw_record(raw: str | None) -> dict[str, Any]:
    """A quarantined row as stored: the source's columns, or ``{"line": text}`` when it was not an object."""
    try:
        parsed = json.loads(raw) if raw else None
    except json.JSONDecodeError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"line": raw}


def _is_retry_of_open(row: dict[str, Any]) -> bool:
    """A row that failed again in a retry stays quarantined under its original entry, not a new one."""
    raw = row["raw"]
    return isinstance(raw, dict) and raw.get("_quarantine_id") not in (None, "")


def retry_quarantine(
    context: Context, workspace: Workspace, import_id: str, *, fixed_file: Path | None = None,
    mapping_file: Path | None = None, progress: Progress | None = None,
) -> ImportSummary:
    """Import an import's quarantined rows again, as fixed by the operator (``fixed_file``, as written by
    ``quarantine export``) or as they are under a corrected mapping (``mapping_file``).

    Rows that pass are imported and their quarantine entries resolved; the others stay open.
    """
    from memberops.ingest.mapping import load_mapping
    from memberops.ingest.quarantine import export_rows, get_import

    with context.store.read() as session:
        run = get_import(session, workspace.id, import_id)
        mapping = Mapping.model_validate(run.mapping)
        if mapping_file is not None:
            mapping = mapping.merged(load_mapping(mapping_file, run.kind))
        is_jsonl = mapping.format == "jsonl"
        if fixed_file is None:
            scratch = Path(tempfile.mkdtemp(prefix="retry-", dir=context.settings.data_dir))
            fixed_file = scratch / f"quarantine-{import_id}.{'jsonl' if is_jsonl else 'csv'}"
            export_rows(session, workspace.id, import_id, fixed_file)
    # The export is UTF-8 with a header row whatever the original file was.
    retry_mapping = mapping.model_copy(update={
        "format": "jsonl" if is_jsonl else "csv", "encoding": "utf-8", "delimiter": ",",
    })
    return import_file(context, workspace, kind_name=run.kind, path=fixed_file, channel=run.channel,
                       mapping=retry_mapping, progress=progress)
