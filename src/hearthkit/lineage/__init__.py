"""Lineage: models registered with their run and manifest, model cards, inherited labels."""
