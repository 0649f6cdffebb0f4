from __future__ import annotations

from pathlib import Path

import pytest

from memberops.config import EngineKind, Settings


class TestSettings:
    def test_defaults_derive_from_the_data_dir(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("MEMBEROPS_DATA_DIR", str(tmp_path / "d"))
        settings = Settings()
        assert settings.data_dir == tmp_path / "d"
        assert settings.database_url == f"sqlite:///{tmp_path / 'd' / 'memberops.db'}"
        assert settings.lake_path == tmp_path / "d" / "lake"
        assert settings.queue_url == f"sqlite:///{tmp_path / 'd' / 'queue.db'}"
        assert settings.engine == EngineKind.duckdb

    def test_environment_overrides_toml(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.chdir(tmp_path)
        (tmp_path / "memberops.toml").write_text('engine = "pyspark"\nqueue_url = "redis://localhost:6379/3"\n')
        assert Settings().engine == EngineKind.pyspark
        assert Settings().queue_url == "redis://localhost:6379/3"
        monkeypatch.setenv("MEMBEROPS_ENGINE", "duckdb")
        assert Settings().engine == EngineKind.duckdb

    def test_config_file_named_by_env(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        config = tmp_path / "elsewhere.toml"
        config.write_text(f'data_dir = "{tmp_path / "x"}"\n')
        monkeypatch.setenv("MEMBEROPS_CONFIG", str(config))
        assert Settings().data_dir == tmp_path / "x"

    def test_unknown_engine_is_rejected(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("MEMBEROPS_ENGINE", "oracle")
        with pytest.raises(ValueError, match="engine"):
            Settings()

    def test_redacted_hides_passwords(self) -> None:
        settings = Settings(database_url="postgresql://app:s3cret@db:5432/memberops", secret_key="k")
        shown = settings.redacted()
        assert "s3cret" not in shown["database_url"]
        assert shown["secret_key"] == "(set)"

    def test_signing_key_is_generated_once(self, tmp_path: Path) -> None:
        settings = Settings(data_dir=tmp_path)
        first = settings.signing_key()
        assert len(first) > 40
        assert Settings(data_dir=tmp_path).signing_key() == first
        assert (tmp_path / "secret.key").stat().st_mode & 0o077 == 0
