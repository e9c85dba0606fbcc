"""Content-addressed storage of item bytes."""
