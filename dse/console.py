"""Rich renderings for the terminal: the CLI prints these, library code never does."""

from __future__ import annotations

from rich.table import Table

from dse.arch.analytics import Summary


def _n(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def arch_table(summary: Summary, title: str, bits: int = 32) -> Table:
    """The paper's Table 1 layout for any candidate, with MACs and a totals row."""
    table = Table(title=title, title_justify="left")
    for column in ("layer", "output", "filters", "s1x1", "e1x1", "e3x3", "bypass", "params", "MACs"):
        table.add_column(column, justify="left" if column in ("layer", "filters", "bypass") else "right")
    for layer in summary.layers:
        h, w, c = layer.output_shape
        table.add_row(
            layer.name, f"{h}x{w}x{c}", layer.filters, _n(layer.squeeze), _n(layer.expand1x1), _n(layer.expand3x3),
            layer.bypass, _n(layer.params or None), _n(layer.macs or None),
        )
    size = f"{summary.size_mb(bits):.2f} MB at {bits}-bit"
    table.add_section()
    table.add_row("total", "", size, "", "", "", "", _n(summary.params), _n(summary.macs))
    return table
