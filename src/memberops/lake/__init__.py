"""The lake: append-only Parquet fact tables, their writer, the outbox export and the warehouse engine."""
