"""Ingestion: canonical facts, channel presets and mapping files, batch import, quarantine, HTTP ingest."""
