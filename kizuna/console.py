"""The CLI's output: one console for results, one for progress and errors."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    """Print an error (it says what to do next) and exit with ``code``."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)
