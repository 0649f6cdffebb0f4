"""Source files as DuckDB sees them: format and encoding detection, hashing, and the relation to read.

CSV is read by DuckDB itself with every column as text; lines it cannot split (wrong column count,
bytes that are not UTF-8) go to its reject table and from there to quarantine. A GB18030 file (what
Chinese marketplace back offices export) is first transcoded to UTF-8 in a streaming pass, bounded in
memory. JSON Lines are read a line at a time as text so a malformed line is quarantined, not lost.
"""

from __future__ import annotations

import codecs
import hashlib
from dataclasses import dataclass
from pathlib import Path

from memberops.errors import Invalid
from memberops.ingest.mapping import Mapping
from memberops.ingest.transform import ident, literal

CHUNK = 1 << 20
REJECTS_TABLE = "import_reject_errors"
REJECT_SCANS = "import_reject_scans"


class UnreadableFile(Invalid):
    code = "unreadable_file"


@dataclass(frozen=True)
class Source:
    path: Path  # the file DuckDB reads (a UTF-8 copy for a transcoded file)
    original: Path
    format: str
    delimiter: str
    encoding: str

    def relation(self, rejects_table: str = REJECTS_TABLE, rejects_scan: str = REJECT_SCANS) -> str:
        """SQL for the rows of the file, every value as text; unreadable lines go to ``rejects_table``
        (a second reading of the file names another one, so that no line is counted twice)."""
        path = literal(str(self.path))
        rejects = f"store_rejects = true, rejects_table = {literal(rejects_table)}, rejects_scan = {literal(rejects_scan)}"
        if self.format == "csv":
            return (f"read_csv({path}, all_varchar = true, header = true, delim = {literal(self.delimiter)}, "
                    f"{rejects}, null_padding = false, encoding = 'utf-8')")
        if self.format == "jsonl":
            return (f"read_csv({path}, columns = {{'line': 'VARCHAR'}}, header = false, delim = chr(31), "
                    f"quote = '', escape = '', auto_detect = false, strict_mode = false, {rejects})")
        return f"read_parquet({path})"

    def column_text(self, column: str, is_json: bool) -> str:
        """SQL reading ``column`` of a row as text (a JSON sub-object stays JSON text)."""
        if self.format == "jsonl":
            path = literal("$." + '"' + column.replace('"', '\\"') + '"')
            reader = "json_extract" if is_json else "json_extract_string"
            return f"(CASE WHEN json_valid(line) THEN {reader}(line, {path})::VARCHAR END)"
        return f"CAST({ident(column)} AS VARCHAR)"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def detect_format(path: Path, given: str | None, mapping: Mapping) -> str:
    chosen = given or mapping.format
    if chosen:
        return chosen
    suffixes = [s.lower() for s in path.suffixes]
    if ".parquet" in suffixes:
        return "parquet"
    if ".jsonl" in suffixes or ".ndjson" in suffixes or ".json" in suffixes:
        return "jsonl"
    if ".csv" in suffixes or ".tsv" in suffixes or ".txt" in suffixes:
        return "csv"
    raise UnreadableFile(f"{path.name}: cannot tell the format; pass --format csv|jsonl|parquet")


def detect_encoding(path: Path, declared: str) -> str:
    """``utf-8`` or ``gb18030``: the declared one, else UTF-8 if the first megabyte decodes as UTF-8."""
    if declared != "auto":
        return declared
    with open(path, "rb") as handle:
        head = handle.read(CHUNK)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8"
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(head, final=False)  # a multi-byte character cut at the end is not an error
    except UnicodeDecodeError:
        return "gb18030"
    return "utf-8"


def transcode_to_utf8(path: Path, encoding: str, out: Path) -> Path:
    """Stream ``path`` from ``encoding`` to UTF-8 at ``out``; undecodable bytes become U+FFFD (and the row
    is then quarantined by the importer's encoding check)."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    with open(path, "rb") as source, open(out, "w", encoding="utf-8", newline="") as target:
        while chunk := source.read(CHUNK):
            target.write(decoder.decode(chunk))
        target.write(decoder.decode(b"", final=True))
    return out


def open_source(path: Path, fmt: str | None, mapping: Mapping, scratch: Path) -> Source:
    """Prepare ``path`` for reading: detect format and encoding, transcode if needed."""
    if not path.is_file():
        raise UnreadableFile(f"{path}: no such file")
    chosen = detect_format(path, fmt, mapping)
    if chosen == "parquet":
        return Source(path, path, chosen, mapping.delimiter, "binary")
    encoding = detect_encoding(path, mapping.encoding)
    if encoding == "utf-8":
        with open(path, "rb") as handle:
            has_bom = handle.read(3) == codecs.BOM_UTF8
        if has_bom:  # DuckDB would keep the BOM in the first column's name
            return Source(transcode_to_utf8(path, "utf-8-sig", scratch / f"{path.stem}.utf8"), path, chosen,
                          mapping.delimiter, "utf-8")
        return Source(path, path, chosen, mapping.delimiter, encoding)
    return Source(transcode_to_utf8(path, encoding, scratch / f"{path.stem}.utf8"), path, chosen,
                  mapping.delimiter, encoding)
