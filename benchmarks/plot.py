"""Charts of one harness run: ``python -m benchmarks.plot RUN.json [--out FOLDER]``.

Writes ``throughput.png`` (jobs/s per system: drain, IO, single enqueue; bars at the median,
whiskers from the fastest to the slowest repetition) and ``latency.png`` (enqueue -> start
p50, p95, p99 per system), each titled with the run's date, machine, versions and commit;
``--table`` prints the run as a markdown table (medians, ranges) instead.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display
import matplotlib.pyplot as plt

THROUGHPUT = (("drain", "drain"), ("io", "io"), ("enqueue", "enqueue_single"))
LATENCY = ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms")


def caption(run: dict[str, Any]) -> str:
    versions = run["versions"]
    shown = ", ".join(f"{name} {versions[name]}" for name in sorted(versions))
    machine = run["machine"]
    return (
        f"{run['date']} · commit {run['commit']} · {machine['cpus']} CPUs, {machine['cpu']}\n"
        f"{shown}"
    )


def figure_of(run: dict[str, Any], system: str, workload: str, name: str) -> dict[str, float]:
    found: dict[str, float] = run["results"].get(system, {}).get(workload, {}).get(name, {})
    return found


def bars(axis: Any, run: dict[str, Any], systems: list[str], items: list[tuple[str, str]]) -> None:
    """Grouped bars, one group per system, one bar per (workload, figure) item."""
    width = 0.8 / len(items)
    for index, (workload, name) in enumerate(items):
        medians, low, high = [], [], []
        for system in systems:
            found = figure_of(run, system, workload, name)
            median = found.get("median", 0.0)
            medians.append(median)
            low.append(median - found.get("min", median))
            high.append(found.get("max", median) - median)
        where = [i + index * width for i in range(len(systems))]
        axis.bar(where, medians, width, yerr=[low, high], capsize=2, label=name)
    axis.set_xticks([i + 0.4 - width / 2 for i in range(len(systems))], systems, rotation=30)
    axis.legend()


def plot(run: dict[str, Any], out: Path) -> list[Path]:
    systems = list(run["results"])
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for file, items, label in (
        ("throughput.png", list(THROUGHPUT), "jobs/s (median; whiskers: min-max)"),
        ("latency.png", [("latency", name) for name in LATENCY], "enqueue -> start, ms"),
    ):
        chart, axis = plt.subplots(figsize=(12, 6))
        bars(axis, run, [s for s in systems if s != "bare" or file == "throughput.png"], items)
        axis.set_ylabel(label)
        if file == "latency.png":
            axis.set_yscale("log")
        chart.suptitle(caption(run), fontsize=8)
        chart.tight_layout()
        chart.savefig(out / file, dpi=90)
        plt.close(chart)
        made.append(out / file)
    return made


TABLE = (
    ("drain", "drain", "drain jobs/s", "{:,.0f}"),
    ("io", "io", "IO jobs/s", "{:,.0f}"),
    ("latency", "latency_p50_ms", "p50 ms", "{:.2f}"),
    ("latency", "latency_p99_ms", "p99 ms", "{:.2f}"),
    ("enqueue", "enqueue_single", "enqueue/s", "{:,.0f}"),
    ("enqueue", "enqueue_batch", "bulk enqueue/s", "{:,.0f}"),
    ("drain", "startup_s", "start-up s", "{:.2f}"),
    ("drain", "commands_per_job", "Redis cmds/job", "{:.1f}"),
)


def table(run: dict[str, Any]) -> str:
    """The run as a markdown table: each figure's median, and its range when it has several."""
    lines = [
        "| system | " + " | ".join(head for _, _, head, _ in TABLE) + " |",
        "|---|" + "---:|" * len(TABLE),
    ]
    for system in run["results"]:
        cells = []
        for workload, name, _, form in TABLE:
            found = figure_of(run, system, workload, name)
            if not found:
                cells.append("-")
                continue
            cell = form.format(found["median"])
            if found["min"] != found["max"]:
                cell += f" ({form.format(found['min'])}-{form.format(found['max'])})"
            cells.append(cell)
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    parser.add_argument("--table", action="store_true", help="print a markdown table instead")
    args = parser.parse_args()
    run = json.loads(args.run.read_text())
    if args.table:
        print(table(run))
        return
    for path in plot(run, args.out):
        print(path)


if __name__ == "__main__":
    main()
