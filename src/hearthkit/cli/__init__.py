"""The `hearth` command line (typer + rich, heavy imports inside commands)."""
