"""One file's import on its own DuckDB connection: read, judge, stage or stream, write to the lake.

The SQL that reads and judges each field comes from ``ingest/transform.py``; what becomes of the counts
and quarantined rows is ``ingest/batch.py``'s business. Two roads to the lake (see :class:`FileImporter`):
staging every row in file order, or one pass from the file's scan to Parquet for facts keyed by one
column.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from memberops.accounts.models import Workspace
from memberops.errors import Invalid
from memberops.identity.normalise import normalise_phone
from memberops.ingest.canonical import CONSENT_CHANNELS, CUSTOMERS, RecordKind
from memberops.ingest.mapping import Mapping
from memberops.ingest.sources import REJECT_SCANS, REJECTS_TABLE, Source
from memberops.ingest.transform import (
    LAKE_SQL_TYPES,
    PHONE_FUNCTION,
    FieldPlan,
    checked_value,
    ident,
    literal,
    plan_fields,
    reasons_sql,
    warnings_sql,
)
from memberops.lake.registry import PARTITION_COLUMN, table_spec
from memberops.lake.writer import has_files, table_glob
from memberops.runtime import Context

Progress = Callable[[str, float | None], None]
"""Called as ``progress(phase, fraction_done_or_None)`` while an import runs."""


class MissingColumns(Invalid):
    """The file has no column at all for a required field: nothing could be imported, so nothing is."""

    code = "missing_columns"


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


class FileImporter:
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
        written = self.run_sql("reading and writing", f"""
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
