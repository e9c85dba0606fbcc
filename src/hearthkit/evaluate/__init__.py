"""Disaggregated evaluation: metrics per speaker, dialect, region; gaps and confidence intervals."""
