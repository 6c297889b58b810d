"""``--log-level`` and ``--log-format``: accepted before any command and after it.

``conveyor --log-format json worker ...`` and ``conveyor worker --log-format json ...`` both
work (and ``CONVEYOR_LOG_LEVEL`` / ``CONVEYOR_LOG_FORMAT``): the group reads the flags and the
environment and sets logging up (``services.logs``) before the command runs; ``with_logging``
gives every command the same two flags, which override the group's. The settings then travel
in click's context object (``LogSettings``) to the commands that start processes.

``say`` is for the few lines a command writes to stderr outside logging (``error: ...``, the
start line of ``conveyor run``): plain text, or a log record when the format is JSON, so that
stderr then holds JSON lines only.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import click

from services.logs import LogFormat, LogSettings, setup_logging

LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]
FORMAT_HELP = "text: lines for people; json: one JSON object per line, for log collectors."

log = logging.getLogger("conveyor")


def group_logging_options(func: Any) -> Any:
    """The group's flags, with their defaults and environment variables."""
    level = click.option(
        "--log-level",
        default="INFO",
        envvar="CONVEYOR_LOG_LEVEL",
        show_default=True,
        show_envvar=True,
        type=click.Choice(LEVELS, case_sensitive=False),
    )
    fmt = click.option(
        "--log-format",
        default=LogFormat.TEXT.value,
        envvar="CONVEYOR_LOG_FORMAT",
        show_default=True,
        show_envvar=True,
        type=click.Choice([each.value for each in LogFormat]),
        help=FORMAT_HELP,
    )
    return level(fmt(func))


def start_logging(ctx: click.Context, log_level: str, log_format: str) -> LogSettings:
    """Set logging up from the group's flags; the settings become the context's object."""
    settings = LogSettings(getattr(logging, log_level.upper()), LogFormat(log_format))
    setup_logging(settings)
    ctx.obj = settings
    return settings


def with_logging(command: click.Command) -> click.Command:
    """``command`` (and, for a group, each of its commands) accepting the two flags too."""
    names = {param.name for param in command.params}
    if "log_format" not in names:
        command.params += [
            _override("--log-level", LEVELS, _level),
            _override("--log-format", [each.value for each in LogFormat], _format),
        ]
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            with_logging(sub)
    return command


def _level(settings: LogSettings, value: str) -> LogSettings:
    return dataclasses.replace(settings, level=getattr(logging, value.upper()))


def _format(settings: LogSettings, value: str) -> LogSettings:
    return dataclasses.replace(settings, format=LogFormat(value))


def _override(
    flag: str, choices: list[str], change: Callable[[LogSettings, str], LogSettings]
) -> click.Option:
    """A command's copy of a group flag: no default, so only a given value overrides."""

    def apply(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
        if value is None:
            return
        settings = change(current(ctx), value)
        setup_logging(settings)
        scope: click.Context | None = ctx
        while scope is not None:  # the group's too: it reports the command's errors (``say``)
            scope.obj = settings
            scope = scope.parent

    return click.Option(
        [flag],
        type=click.Choice(choices, case_sensitive=False),
        expose_value=False,
        callback=apply,
        help=f"Same as `conveyor {flag} ...` before the command.",
    )


def current(ctx: click.Context | None = None) -> LogSettings:
    """The log settings of ``ctx`` (default: the current context), or the defaults."""
    ctx = ctx or click.get_current_context(silent=True)
    found = ctx.find_object(LogSettings) if ctx is not None else None
    return found or LogSettings()


def say(text: str, *, level: int = logging.INFO) -> None:
    """``text`` on stderr: as it is, or as a log record at ``level`` when logging JSON."""
    if current().format is LogFormat.JSON:
        log.log(level, "%s", text)
    else:
        click.echo(text, err=True)
