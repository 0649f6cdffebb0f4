"""Bringing the generated demo brand in: every file of its manifest, through the channel presets."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

from memberops.accounts.models import Workspace
from memberops.demo.clock import DemoWindow
from memberops.ingest.batch import ImportSummary, Progress, import_file
from memberops.runtime import Context


def _manifest(directory: Path) -> dict[str, Any] | None:
    path = directory / "manifest.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def brand_window(directory: Path) -> DemoWindow | None:
    """The window of history of the brand generated in ``directory``, or None when there is none."""
    manifest = _manifest(directory)
    return None if manifest is None else DemoWindow(datetime.fromisoformat(manifest["window"]["end"]).date())


def brand_is_generated(directory: Path, *, members: int, seed: int, end: date | None = None) -> bool:
    """Whether ``directory`` already holds the brand for ``members`` and ``seed`` (generation is deterministic),
    and, when ``end`` is given, whose history ends on that day; without ``end`` any window will do."""
    manifest = _manifest(directory)
    if manifest is None or manifest.get("members") != members or manifest.get("seed") != seed:
        return False
    return end is None or datetime.fromisoformat(manifest["window"]["end"]).date() == end


def import_brand(
    context: Context, workspace: Workspace, directory: Path, *, progress: Progress | None = None,
) -> list[ImportSummary]:
    """Import every file of the brand's manifest, in its order, each with its channel's preset.

    Idempotent like every import: a second run recognises each file and changes nothing.
    """
    manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    return [
        import_file(context, workspace, kind_name=entry["kind"], path=directory / entry["path"],
                    channel=entry["channel"], file_format=entry["format"], progress=progress)
        for entry in manifest["files"]
    ]
