"""Mapping files and channel presets: how a source file's columns become canonical fields.

A mapping names, for each canonical field, the file's column; optionally parse formats, constants,
value maps, the default phone region and the time zone of naive timestamps. A channel preset is a
mapping that ships with memberops (``ingest/presets/<channel>/<kind>.yaml``)::

    kind: orders
    format: csv
    encoding: auto            # utf-8 | gb18030 | auto (tries UTF-8, then GB18030)
    columns: {order_id: 订单编号, customer_key: 买家会员名, paid_amount: 买家实际支付金额}
    formats: {ordered_at: "%Y-%m-%d %H:%M:%S"}
    defaults: {currency: CNY}
    values: {status: {交易成功: completed, 交易关闭: cancelled}}
    phone_region: CN
    timezone: Asia/Shanghai
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from memberops.errors import Invalid, NotFound
from memberops.ingest.canonical import KINDS

PRESETS_DIR = Path(__file__).parent / "presets"


class InvalidMapping(Invalid):
    code = "invalid_mapping"


class PresetNotFound(NotFound):
    code = "preset_not_found"


class Mapping(BaseModel):
    """How one file's columns become one kind of canonical record."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str | None = Field(default=None, description="customers | orders | order-items | refunds | events")
    format: Literal["csv", "jsonl", "parquet"] | None = None
    encoding: Literal["auto", "utf-8", "gb18030"] = "auto"
    delimiter: str = ","
    columns: dict[str, str] = Field(default_factory=dict, description="canonical field -> source column")
    formats: dict[str, str] = Field(default_factory=dict, description="strptime format per date/time field")
    defaults: dict[str, str] = Field(default_factory=dict, description="constant per canonical field")
    values: dict[str, dict[str, str]] = Field(default_factory=dict, description="source value -> canonical value")
    phone_region: str = "CN"
    timezone: str = "Asia/Shanghai"
    channel: str | None = Field(default=None, description="the channel a preset belongs to")

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str | None) -> str | None:
        if kind is not None and kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; accepted: {', '.join(KINDS)}")
        return kind

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, timezone: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {timezone!r} (use an IANA name such as Asia/Shanghai)") from None
        return timezone

    @model_validator(mode="after")
    def _fields_exist(self) -> Mapping:
        if self.kind is None:
            return self
        known = set(KINDS[self.kind].field_names)
        for section in ("columns", "formats", "defaults", "values"):
            unknown = set(getattr(self, section)) - known
            if unknown:
                raise ValueError(f"{section}: unknown {self.kind} fields {sorted(unknown)}; known: {sorted(known)}")
        return self

    def source_column(self, field: str) -> str | None:
        """The file's column for ``field``: the mapped one, else a column named like the field."""
        return self.columns.get(field)

    def merged(self, override: Mapping) -> Mapping:
        """This mapping with ``override``'s explicit settings on top (a file's mapping over a preset)."""
        data = self.model_dump()
        for name, value in override.model_dump(exclude_unset=True).items():
            if isinstance(value, dict):
                data[name] = {**data.get(name, {}), **value}
            else:
                data[name] = value
        return Mapping.model_validate(data)


def load_mapping(path: Path, kind: str | None = None) -> Mapping:
    """Read and validate a mapping file; errors name the file and what is wrong."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidMapping(f"{path}: cannot read the mapping: {exc}") from exc
    if not isinstance(raw, dict):
        raise InvalidMapping(f"{path}: a mapping file is a YAML object with `columns:` and friends")
    if kind is not None:
        raw.setdefault("kind", kind)
        if raw["kind"] != kind:
            raise InvalidMapping(f"{path}: this mapping is for {raw['kind']}, not {kind}")
    try:
        return Mapping.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'mapping'}: {e['msg']}" for e in exc.errors())
        raise InvalidMapping(f"{path}: {problems}") from None


def preset_path(channel: str, kind: str) -> Path:
    return PRESETS_DIR / channel / f"{kind}.yaml"


def list_presets() -> list[tuple[str, str]]:
    """Every shipped preset as ``(channel, kind)``."""
    return sorted((p.parent.name, p.stem) for p in PRESETS_DIR.glob("*/*.yaml"))


def resolve_mapping(channel: str, kind: str, mapping_file: Path | None = None) -> Mapping:
    """The mapping an import uses: the channel's preset (if any), overridden by the mapping file (if given)."""
    preset_file = preset_path(channel, kind)
    preset = load_mapping(preset_file, kind) if preset_file.exists() else None
    given = load_mapping(mapping_file, kind) if mapping_file is not None else None
    if preset is not None and given is not None:
        return preset.merged(given)
    if given is not None:
        return given
    if preset is not None:
        return preset
    return Mapping(kind=kind)  # columns named like the canonical fields
