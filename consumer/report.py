"""What ``conveyor run`` and ``conveyor bench`` show on a terminal: the tqdm bars (a live progress
bar and a summary of a run; a bar over the benchmark's phases), the one module adapting tqdm."""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, TextIO

from tqdm import tqdm

from services.protocol import DeadLetter
from services.stats import Field, Totals


@dataclass(frozen=True)
class Tally:
    """Where a run stands after one turn: the producers' and the backend's numbers."""

    produced: int
    totals: Totals
    """The workers' counters (retries, running, latencies): for display only."""
    done: int
    """Settled done in the backend since the run began."""
    dead: int
    """Dead-lettered in the backend since the run began."""
    unsettled: int
    """Jobs of the queue the backend still holds that will run: waiting, delayed, in flight."""

    @property
    def settled(self) -> int:
        return self.done + self.dead


@dataclass(frozen=True)
class RunSummary:
    """The figures of one run; done and dead as the backend counted them."""

    produced: int
    totals: Totals
    done: int
    dead: int
    elapsed_s: float
    dead_letters: list[DeadLetter]
    """The newest dead letters of this run (a bounded sample, for grouping by error)."""
    unsettled: int = 0

    @property
    def accounted(self) -> int:
        return self.done + self.dead

    @property
    def unaccounted(self) -> int:
        """Produced but not settled (negative: settled more often than produced, an excess)."""
        return self.produced - self.accounted

    @property
    def rate(self) -> float:
        return self.accounted / self.elapsed_s if self.elapsed_s > 0 else 0.0


class Progress:
    """A tqdm bar on a terminal; elsewhere a plain line every few seconds (logs stay readable)."""

    def __init__(self, stream: TextIO | None = None, *, every_s: float = 2.0) -> None:
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._bar: Any = None
        self._every_s = every_s
        self._last_line = 0.0

    def update(self, tally: Tally, *, producing: bool) -> None:
        totals, produced = tally.totals, tally.produced
        fields = (
            f"done={tally.done} retried={totals.count(Field.RETRIED)} dead={tally.dead} "
            f"running={totals.count(Field.RUNNING)}"
        )
        if self._tty:
            self._update_bar(produced, tally.settled, fields, producing=producing)
        elif time.monotonic() - self._last_line >= self._every_s:
            self._last_line = time.monotonic()
            more = "+" if producing else ""
            print(
                f"progress: {tally.settled}/{produced}{more} jobs settled, {fields}",
                file=self._stream,
                flush=True,
            )

    def _update_bar(self, produced: int, settled: int, fields: str, *, producing: bool) -> None:
        if self._bar is None:
            self._bar = tqdm(total=produced, unit="job", file=self._stream, dynamic_ncols=True)
        self._bar.total = produced
        self._bar.set_postfix_str(fields + (" (producing)" if producing else ""), refresh=False)
        self._bar.update(settled - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def format_summary(summary: RunSummary) -> str:
    """The summary block printed at the end of ``conveyor run``."""
    totals = summary.totals
    p50, p99 = totals.percentile_s(0.5), totals.percentile_s(0.99)
    lines = [
        "",
        "summary",
        f"  produced      {summary.produced}",
        f"  done          {summary.done}",
        f"  failed        {totals.count(Field.FAILED)} attempts "
        f"({totals.count(Field.TIMED_OUT)} timed out)",
        f"  retried       {totals.count(Field.RETRIED)}",
        f"  dead-lettered {summary.dead}",
        f"  unaccounted   {_unaccounted(summary)}",
        f"  elapsed       {summary.elapsed_s:.2f} s",
        f"  throughput    {summary.rate:.1f} jobs/s",
        f"  latency p50   {_ms(p50)}   p99 {_ms(p99)}  (enqueue to done)",
    ]
    return "\n".join(lines + _by_error(summary))


def _unaccounted(summary: RunSummary) -> str:
    """The figure alone on its line (scripts parse it), then what a non-zero one means."""
    missing, pad = summary.unaccounted, "\n" + " " * 16
    if missing < 0:
        return f"{missing}{pad}EXCESS: {-missing} job(s) settled more often than produced"
    if missing == 0:
        return "0"
    left = f", {summary.unsettled} still queued or in flight" if summary.unsettled else ""
    return f"{missing}{pad}MISSING: {missing} job(s) not settled{left}"


def _by_error(summary: RunSummary) -> list[str]:
    lines: list[str] = []
    kinds: Counter[str] = Counter()
    example: dict[str, str] = {}
    for letter in summary.dead_letters:
        last = (letter.reason.strip().splitlines() or [""])[-1][:100]
        kind = last.partition(":")[0] if ": " in last else last
        kinds[kind] += 1
        example.setdefault(kind, last)
    if kinds:
        shown = len(summary.dead_letters)
        sample = f", the newest {shown} of {summary.dead}" if shown < summary.dead else ""
        lines.append(f"  dead letters by error (an example of each{sample}):")
        lines += [f"    {n:5d}  {example[kind]}" for kind, n in kinds.most_common(5)]
    return lines


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


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
