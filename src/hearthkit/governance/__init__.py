"""Governance: the label vocabulary, purposes, consent rules and the manifest they produce."""
