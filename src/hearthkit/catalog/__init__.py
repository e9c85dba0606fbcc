"""The catalog: items, consent, labels and provenance, in SQLite or PostgreSQL."""
