"""Long recordings: split at pauses, transcribe in batches, write time-aligned VTT/SRT/ELAN for review."""
