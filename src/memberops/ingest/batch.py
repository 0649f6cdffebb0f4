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
file's rows anywhere (``FileImporter.stream`` in ``ingest/importer.py``); only a key seen twice in the
file sends it back to staging. That road costs about what DuckDB's own ``COPY`` of the file to Parquet
costs, plus the partitioning and the checks; staging costs about twice as much.

A crash before 4 leaves the run unfinished; importing the file again redoes it, and step 2 drops the
rows whose files already reached the lake. Memory is bounded by DuckDB's ``memory_limit``; it spills to
the data dir beyond that.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from memberops.accounts.models import Workspace
from memberops.db.base import utcnow
from memberops.errors import Invalid
from memberops.ids import new_id
from memberops.ingest.canonical import KINDS, RecordKind
from memberops.ingest.importer import FileImporter, MissingColumns, Progress, Streamed
from memberops.ingest.mapping import Mapping, resolve_mapping
from memberops.ingest.models import ImportRun, QuarantinedRow
from memberops.ingest.sources import file_sha256, open_source
from memberops.ingest.transform import REASON_SEPARATOR, FieldPlan
from memberops.lake.writer import TMP_DIR
from memberops.runtime import Context

__all__ = ["ImportSummary", "MissingColumns", "Progress", "UnknownKind", "import_file", "retry_quarantine"]

QUARANTINE_INSERT_CHUNK = 5_000


class UnknownKind(Invalid):
    code = "unknown_kind"


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


def kind_named(name: str) -> RecordKind:
    try:
        return KINDS[name]
    except KeyError:
        raise UnknownKind(f"unknown kind {name!r}; accepted: {', '.join(KINDS)}", kind=name) from None


def _mapping_sha(mapping: Mapping) -> str:
    return hashlib.sha256(json.dumps(mapping.model_dump(), sort_keys=True, ensure_ascii=False).encode()).hexdigest()


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
        importer: FileImporter | None = None
        try:
            source = open_source(path, file_format, mapping, scratch)
            importer = FileImporter(context, workspace, kind, channel, mapping, source, run_id, scratch, progress)
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


def _finish(context: Context, workspace: Workspace, importer: FileImporter, plans: list[FieldPlan],
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


def _finish_streamed(context: Context, workspace: Workspace, importer: FileImporter, streamed: Streamed,
                     summary: ImportSummary) -> ImportSummary:
    """Publish, count and record an import written in one pass (:meth:`FileImporter.stream`)."""
    importer.publish_streamed(streamed)
    summary.accepted = streamed.count(*Streamed.ACCEPTED)
    summary.accepted_with_warnings = streamed.count("warn")
    summary.duplicates_existing = streamed.count("existing", "existing_warn")
    quarantined = importer.con.execute(
        "SELECT _row, _reasons, _raw FROM flagged WHERE _reasons <> '' ORDER BY _row").fetchall()
    _count_reasons(importer, summary, "flagged", quarantined)
    _record(context, workspace, summary.import_id, summary, quarantined, importer.rejects(), None)
    return summary


def _count_reasons(importer: FileImporter, summary: ImportSummary, table: str,
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


def _retried_rows(importer: FileImporter) -> dict[str, list[int]]:
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
