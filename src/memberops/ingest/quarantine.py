"""Quarantine: the rows an import could not accept, kept whole with their reasons until fixed.

An operator lists the imports with quarantined rows, shows their rows, exports them to a file with a
``_quarantine_id`` column, fixes the file (or the mapping), and retries: rows that now pass are imported
and their entries resolved; rows that still fail stay open with their new reason.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from memberops.accounts.models import Workspace
from memberops.errors import NotFound
from memberops.ingest.models import ImportRun, QuarantinedRow


class ImportNotFound(NotFound):
    code = "import_not_found"

    def __init__(self, import_id: str) -> None:
        super().__init__(f"no import {import_id}", import_id=import_id)


@dataclass(frozen=True)
class QuarantineOverview:
    run: ImportRun
    open_rows: int


def list_imports(session: Session, workspace_id: str, *, only_open: bool = True, limit: int = 50) -> list[QuarantineOverview]:
    """Recent imports and how many of their rows are still quarantined."""
    open_rows = (
        select(QuarantinedRow.import_id, func.count(QuarantinedRow.id).label("n"))
        .where(QuarantinedRow.workspace_id == workspace_id, QuarantinedRow.status == "open")
        .group_by(QuarantinedRow.import_id)
        .subquery()
    )
    query = (
        select(ImportRun, func.coalesce(open_rows.c.n, 0))
        .outerjoin(open_rows, open_rows.c.import_id == ImportRun.id)
        .where(ImportRun.workspace_id == workspace_id)
        .order_by(ImportRun.started_at.desc())
        .limit(limit)
    )
    if only_open:
        query = query.where(open_rows.c.n > 0)
    return [QuarantineOverview(run, int(n)) for run, n in session.execute(query).all()]


def get_import(session: Session, workspace_id: str, import_id: str) -> ImportRun:
    run = session.scalar(select(ImportRun).where(ImportRun.id == import_id, ImportRun.workspace_id == workspace_id))
    if run is None:
        raise ImportNotFound(import_id)
    return run


def quarantined_rows(
    session: Session, workspace_id: str, import_id: str, *, status: str | None = "open", limit: int | None = None,
) -> Sequence[QuarantinedRow]:
    get_import(session, workspace_id, import_id)
    query = select(QuarantinedRow).where(QuarantinedRow.import_id == import_id)
    if status:
        query = query.where(QuarantinedRow.status == status)
    query = query.order_by(QuarantinedRow.row_number)
    if limit:
        query = query.limit(limit)
    return session.scalars(query).all()


def export_rows(session: Session, workspace_id: str, import_id: str, out: Path) -> int:
    """Write the import's open quarantined rows to ``out`` for fixing; returns how many.

    CSV imports export CSV with the source's own columns; JSON Lines imports export JSON Lines. Each row
    carries ``_quarantine_id`` (leave it as it is: a retry uses it) and ``_reason``.
    """
    run = get_import(session, workspace_id, import_id)
    rows = quarantined_rows(session, workspace_id, import_id)
    is_jsonl = run.mapping.get("format") == "jsonl" or out.suffix.lower() in (".jsonl", ".ndjson")
    if is_jsonl:
        with open(out, "w", encoding="utf-8") as handle:
            for row in rows:
                record = _json_record(row.raw.get("line")) if set(row.raw) == {"line"} else dict(row.raw)
                record.update({"_quarantine_id": row.id, "_reason": row.reason})
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        return len(rows)
    columns: list[str] = []
    for row in rows:
        for key in row.raw:
            if key not in columns:
                columns.append(key)
    with open(out, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["_quarantine_id", "_reason", *columns])
        for row in rows:
            writer.writerow([row.id, row.reason, *(_text(row.raw.get(c)) for c in columns)])
    return len(rows)


def _json_record(line: object) -> dict[str, object]:
    if isinstance(line, str):
        try:
            parsed = json.loads(line)
        except json.JSONDecodeError:
            return {"_raw_line": line}
        if isinstance(parsed, dict):
            return parsed
    return {"_raw_line": line}


def _text(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def discard(session: Session, workspace: Workspace, import_id: str) -> int:
    """Give up on an import's open quarantined rows (they stay on record, marked discarded)."""
    get_import(session, workspace.id, import_id)
    result = session.execute(
        update(QuarantinedRow)
        .where(QuarantinedRow.import_id == import_id, QuarantinedRow.status == "open")
        .values(status="discarded")
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
