"""``LazyGroup``: a command group that imports each of its commands only when it runs.

Click's documented pattern for lazily loaded subcommands ("Advanced Groups and Context",
``LazyGroup``), with two additions: each entry carries the line ``--help`` shows for it, so
listing the commands imports none of them; and each command it loads accepts the logging flags
(``services.cli.logging_options``) after its name too. ``tests/test_cli.py`` checks that the
line is the one the command's own docstring gives.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import click

from services.cli.command import ConveyorGroup
from services.cli.logging_options import with_logging


@dataclass(frozen=True)
class LazyCommand:
    """A command known by where it lives and by what ``--help`` says of it."""

    target: str
    """``"package.module:attribute"``, the attribute being a click command."""
    summary: str
    """The first paragraph of the command's help, shown in its group's command list."""


def load_command(target: str) -> click.Command:
    """Import the click command that ``target`` (``"package.module:attribute"``) names."""
    module_name, _, attribute = target.partition(":")
    command = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{target} is {command!r}, not a click command")
    return command


class LazyGroup(ConveyorGroup):
    """A group of ``LazyCommand``s, plus aliases: other names of the same commands."""

    def __init__(
        self,
        *args: Any,
        lazy_commands: Mapping[str, LazyCommand],
        aliases: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands)
        self.aliases = dict(aliases or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands, *self.aliases})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = self.lazy_commands.get(self.aliases.get(cmd_name, cmd_name))
        if entry is None:
            return super().get_command(ctx, cmd_name)
        return with_logging(load_command(entry.target))  # --log-level/--log-format after it too

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Click's command list, made from the summaries: listing imports no command."""
        shown = [(name, self._stand_in(ctx, name)) for name in self.list_commands(ctx)]
        rows = [(name, command) for name, command in shown if command and not command.hidden]
        if not rows:
            return
        # click's own layout: the help column gets the width left after the longest name
        limit = formatter.width - 6 - max(len(name) for name, _ in rows)
        with formatter.section("Commands"):
            formatter.write_dl([(name, cmd.get_short_help_str(limit)) for name, cmd in rows])

    def _stand_in(self, ctx: click.Context, name: str) -> click.Command | None:
        """A help-only command carrying ``name``'s summary (an added command: itself)."""
        if name in self.aliases:
            return click.Command(name, help=f"Same as {self.aliases[name]} (its old name).")
        entry = self.lazy_commands.get(name)
        if entry is None:
            return super().get_command(ctx, name)
        return click.Command(name, help=entry.summary)
