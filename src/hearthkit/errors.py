"""User-facing errors: one line that names the file or field and what to do."""


class HearthError(Exception):
    """An error caused by the user's input; the CLI prints it as one line, no traceback."""
