"""Recipe asr: CTC speech recognition for oral-history transcription."""
