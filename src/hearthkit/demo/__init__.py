"""Synthetic demo archives, made here from scratch (no downloads)."""
