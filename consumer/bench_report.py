"""What ``conveyor bench`` prints at the end: a table of figures (its bar over the phases is
``consumer.report.PhaseBar``, beside the other tqdm bar)."""

from __future__ import annotations

from consumer.benchmark import Figure


def format_table(figures: list[Figure], skipped: dict[str, str] | None = None) -> str:
    """Figures as an aligned plain-text table: figure, value and unit, what it measured; then
    one line per phase ``skipped`` (phase -> why)."""
    lines = [f"{'figure':22} {'value':>14}  {'unit':8}  detail"]
    for figure in figures:
        lines.append(
            f"{figure.name:22} {_number(figure.value):>14}  {figure.unit:8}  {figure.detail}"
        )
    for phase, reason in (skipped or {}).items():
        lines.append(f"{phase:22} {'-':>14}  {'':8}  {reason}")
    return "\n".join(lines)


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:,.2f}"
    return f"{value:.4f}"
