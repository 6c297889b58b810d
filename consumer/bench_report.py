"""What ``conveyor bench`` shows: a progress bar over its phases, then a table of figures."""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm

from consumer.benchmark import Figure


class PhaseBar:
    """A tqdm bar, one step per phase, naming the phase that runs (stderr, terminal only)."""

    def __init__(self, phases: list[str], stream: TextIO | None = None) -> None:
        stream = stream or sys.stderr
        self._bar = tqdm(
            total=len(phases), unit="phase", file=stream, disable=not stream.isatty(), leave=False
        )

    def begin(self, phase: str) -> None:
        self._bar.set_description_str(phase)

    def end(self) -> None:
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()


def format_table(figures: list[Figure]) -> str:
    """Figures as an aligned plain-text table: figure, value and unit, what it measured."""
    lines = [f"{'figure':22} {'value':>14}  {'unit':8}  detail"]
    for figure in figures:
        lines.append(
            f"{figure.name:22} {_number(figure.value):>14}  {figure.unit:8}  {figure.detail}"
        )
    return "\n".join(lines)


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:,.2f}"
    return f"{value:.4f}"
