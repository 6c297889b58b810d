"""Command and group classes that show Conveyor's own errors as one line and an exit code.

Errors Conveyor raises on purpose (``ConveyorError``) become one ``error: ...`` line on stderr
and exit code 2 for configuration (``ConfigError``), else 1, whether they come from a flag's
check or from the command itself. Anything else keeps its traceback: it is a bug.
"""

from __future__ import annotations

import logging
from typing import Any, NoReturn

import click

from services import exitcodes
from services.cli.logging_options import say
from services.errors import ConfigError, ConveyorError


def fail(error: ConveyorError) -> NoReturn:
    """One clear line and an exit code instead of a traceback: 2 for configuration, else 1."""
    say(f"error: {error}", level=logging.ERROR)  # a JSON line when logging JSON
    raise click.exceptions.Exit(exitcodes.USAGE if isinstance(error, ConfigError) else 1)


class ConveyorCommand(click.Command):
    """A command that reports Conveyor's own errors (flags included) as one line."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except ConveyorError as exc:  # raised by a flag's callback, e.g. a bad queue name
            fail(exc)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConveyorError as exc:
            fail(exc)


class ConveyorGroup(click.Group):
    """A group whose commands report Conveyor's own errors as one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)  # subcommands parse their flags in here
        except ConveyorError as exc:
            fail(exc)
