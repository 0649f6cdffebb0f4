"""Background jobs on huey: a SQLite queue by default, Redis when ``queue_url`` says so."""
