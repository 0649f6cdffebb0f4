"""memberops: member operations platform (SCRM, CDP, loyalty, marketing automation, experimentation)."""

__version__ = "0.1.0"
