"""The demo brand: a workspace, an operator to log in with, and (from the ingestion issue on) its data."""
