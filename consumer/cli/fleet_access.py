"""How ``conveyor scale``, ``pause`` and ``resume`` reach a fleet: the flags and the opening.

On ``redis://`` (and ``rediss://``, ``unix://``) the fleet state is the backend's
(``Backend.fleet()``). On ``memory://`` it lives inside a running ``conveyor run``, reached
through its control socket (``consumer.remote_fleet``): the user's one live run, or the one
``--run PID`` names.
"""

from __future__ import annotations

import contextlib
import getpass
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from consumer.cli.fleet_options import chosen_control_dir, control_dir_option
from consumer.control_socket import find_run
from consumer.remote_fleet import RemoteFleet
from services.backends import open_queue, scheme_of
from services.cli.options import apply_options, connect_url, connection_options
from services.protocol import FleetControl


def fleet_access_options(func: Any) -> Any:
    """``--url`` and its password flags, ``--run`` and ``--control-dir``."""
    return apply_options(
        func,
        [
            connection_options(),
            click.option(
                "--run",
                "run_pid",
                type=click.IntRange(min=1),
                default=None,
                metavar="PID",
                help="memory:// only: the `conveyor run` to reach, when several run.",
            ),
            control_dir_option,
        ],
    )


@contextlib.contextmanager
def opened_fleet(url: str, options: dict[str, Any]) -> Iterator[FleetControl]:
    """The fleet state that ``url`` (and ``--run``, ``--control-dir``) names, closed after."""
    run_pid, directory = options.pop("run_pid"), options.pop("control_dir")
    url = connect_url(url, options)
    if scheme_of(url) == "memory":
        yield RemoteFleet(find_run(Path(chosen_control_dir(directory)), run_pid))
        return
    backend = open_queue(url)
    try:
        yield backend.fleet()
    finally:
        backend.close()


def operator() -> str:
    """``user@host``: who a change is recorded as set by."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
