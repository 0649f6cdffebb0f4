"""Workspaces (brands), console operators with roles, sessions and API keys with scopes."""
