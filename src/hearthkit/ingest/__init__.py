"""Importers: read archive folders into the catalog and the store."""
