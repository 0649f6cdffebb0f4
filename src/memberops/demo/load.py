"""Bringing the generated demo brand in: every file of its manifest, through the channel presets."""

from __future__ import annotations

import json
from pathlib import Path

from memberops.accounts.models import Workspace
from memberops.ingest.batch import ImportSummary, Progress, import_file
from memberops.runtime import Context


def brand_is_generated(directory: Path, *, members: int, seed: int) -> bool:
    """Whether ``directory`` already holds the brand for ``members`` and ``seed`` (generation is deterministic)."""
    manifest = directory / "manifest.json"
    if not manifest.exists():
        return False
    data = json.loads(manifest.read_text(encoding="utf-8"))
    return bool(data.get("members") == members and data.get("seed") == seed)


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
