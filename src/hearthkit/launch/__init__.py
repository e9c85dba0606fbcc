"""Launchers: plan a run folder, then start workers with torchrun."""
