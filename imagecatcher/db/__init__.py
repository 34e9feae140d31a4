"""Database adapter: connection pools, dialects, every SQL statement, migrations."""
