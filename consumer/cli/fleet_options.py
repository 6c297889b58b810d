"""The fleet flags: ``--group`` and ``--max-processes`` of ``conveyor worker`` and ``conveyor
run``, the ``--control-dir`` of a run's control socket, and the ``FleetLink`` they become."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import click

from consumer.control_socket import control_dir
from consumer.reconcile import ReconcileTiming
from consumer.supervisor import FleetLink, SupervisorSettings
from services.cli.options import apply_options
from services.names import check_group_name
from services.protocol import Backend
from services.protocol.history import KeepsHistory

FLEET_TTL_FLOOR_S = 3.0
"""A supervisor is listed lost after max(its lease, this) without a beat (it beats each second)."""


def _checked_group(ctx: click.Context, param: click.Parameter, value: str) -> str:
    return check_group_name(value)


def fleet_options(func: Any) -> Any:
    """``--group`` and ``--max-processes``."""
    return apply_options(
        func,
        [
            click.option(
                "--group",
                default="default",
                show_default=True,
                envvar="CONVEYOR_GROUP",
                show_envvar=True,
                callback=_checked_group,
                help="Fleet group: supervisors of one group share the worker-process total "
                "that `conveyor scale GROUP=N` sets.",
            ),
            click.option(
                "--max-processes",
                type=click.IntRange(min=1),
                default=None,
                envvar="CONVEYOR_MAX_PROCESSES",
                show_envvar=True,
                show_default="the processes it starts with, or the CPUs if more",
                help="Most worker processes this supervisor runs of its group's total.",
            ),
        ],
    )


def control_dir_option(func: Any) -> Any:
    """``--control-dir``: where the control sockets of ``conveyor run`` live."""
    return click.option(
        "--control-dir",
        default=None,
        metavar="DIR",
        envvar="CONVEYOR_CONTROL_DIR",
        show_envvar=True,
        show_default="$XDG_RUNTIME_DIR/conveyor, else /tmp/conveyor-<uid>",
        help="Directory of the control sockets of memory:// runs (`conveyor scale` reaches a "
        "run through its socket).",
    )(func)


def chosen_control_dir(value: str | None) -> str:
    """The ``--control-dir`` given, else the default (read here: CLI modules read the
    environment)."""
    return value or str(control_dir(os.environ.get("XDG_RUNTIME_DIR")))


def with_fleet(settings: SupervisorSettings, options: dict[str, Any]) -> SupervisorSettings:
    """``settings`` with the group and maximum of the fleet flags (popped from ``options``)."""
    return dataclasses.replace(
        settings, group=options.pop("group"), max_processes=options.pop("max_processes")
    )


def fleet_link(backend: Backend, *, lease_s: float | None = None) -> FleetLink:
    """The fleet of ``backend``, its backlog for the autoscaler; a supervisor is listed lost
    once its lease would have expired too (its jobs are then being recovered)."""
    timing = ReconcileTiming()
    if lease_s is not None:
        timing = dataclasses.replace(timing, ttl_s=max(lease_s, FLEET_TTL_FLOOR_S))
    history = backend.history_store() if isinstance(backend, KeepsHistory) else None
    return FleetLink(backend.fleet(), backlog=backend, timing=timing, history=history)
