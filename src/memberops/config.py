"""Settings, in one place.

Every setting is read from a ``MEMBEROPS_*`` environment variable or, failing that, from an optional
``memberops.toml`` (in the working directory, or the file named by ``MEMBEROPS_CONFIG``), or takes its
embedded default. Paths that are not given derive from the data directory, so ``MEMBEROPS_DATA_DIR``
alone moves everything.
"""

from __future__ import annotations

import os
import secrets
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class EngineKind(StrEnum):
    duckdb = "duckdb"
    pyspark = "pyspark"


def _toml_file() -> Path:
    return Path(os.environ.get("MEMBEROPS_CONFIG", "memberops.toml"))


class Settings(BaseSettings):
    """What a memberops process runs with. ``Settings()`` reads the environment and ``memberops.toml``."""

    model_config = SettingsConfigDict(env_prefix="MEMBEROPS_", extra="ignore", frozen=True)

    data_dir: Path = Field(default=Path("memberops-data"), description="where every default file lives")
    database_url: str = Field(default="", description="state store; default: SQLite file in the data dir")
    lake_uri: str = Field(default="", description="Parquet lake folder; default: lake/ in the data dir")
    engine: EngineKind = Field(default=EngineKind.duckdb, description="warehouse engine: duckdb | pyspark")
    queue_url: str = Field(default="", description="job queue; default: SQLite file | redis://…")
    secret_key: str = Field(default="", description="signs console cookies; default: generated once per data dir")
    cookie_secure: bool | None = Field(
        default=None, description="force the Secure cookie flag; default: set when the request is HTTPS"
    )
    max_request_bytes: int = Field(default=2_000_000, description="largest accepted HTTP request body")
    session_hours: int = Field(default=12, description="how long a console login lasts")
    spark_master: str = Field(default="local[2]", description="Spark master when engine=pyspark")
    outbox_batch_size: int = Field(default=5_000, description="outbox rows moved to the lake per batch")
    timezone: str = Field(default="UTC", description="display time zone of the default workspace")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=_toml_file()))

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        data_dir = self.data_dir.expanduser().resolve()
        derived: dict[str, Any] = {"data_dir": data_dir}
        if not self.database_url:
            derived["database_url"] = f"sqlite:///{data_dir / 'memberops.db'}"
        if not self.lake_uri:
            derived["lake_uri"] = str(data_dir / "lake")
        if not self.queue_url:
            derived["queue_url"] = f"sqlite:///{data_dir / 'queue.db'}"
        for name, value in derived.items():
            object.__setattr__(self, name, value)
        return self

    @property
    def lake_path(self) -> Path:
        """The lake as a local folder (``file://`` prefix allowed)."""
        uri = self.lake_uri.removeprefix("file://")
        return Path(uri).expanduser().resolve()

    def ensure_data_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.lake_path.mkdir(parents=True, exist_ok=True)

    def signing_key(self) -> str:
        """The console's cookie-signing key: the configured one, else one generated and kept in the data dir."""
        if self.secret_key:
            return self.secret_key
        self.ensure_data_dir()
        key_file = self.data_dir / "secret.key"
        if not key_file.exists():
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
        return key_file.read_text().strip()

    def redacted(self) -> dict[str, str]:
        """Settings in effect, safe to print: passwords in URLs and the secret key are hidden."""
        from sqlalchemy.engine import make_url

        shown: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name == "secret_key":
                value = "(set)" if value else "(generated, in data dir)"
            elif name in ("database_url", "queue_url") and "://" in str(value):
                try:
                    value = make_url(str(value)).render_as_string(hide_password=True)
                except Exception:  # noqa: BLE001 - an unparsable URL is shown as given minus nothing secret
                    value = str(value).split("@")[-1]
            shown[name] = str(value)
        return shown
