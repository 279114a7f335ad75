"""Rich renderings for the terminal: the CLI prints these, library code never does."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from dse.arch.analytics import MIB, Summary
from dse.contract import OVERVIEW_METRICS, TrialStatus
from dse.train.hooks import Hooks

if TYPE_CHECKING:
    from dse.arch.energy import EnergyEstimate
    from dse.deploy.latency import LatencyReport


def _n(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def arch_table(summary: Summary, title: str, bits: int = 32, energy: EnergyEstimate | None = None) -> Table:
    """The paper's Table 1 layout for any candidate, with MACs, activation elements and a totals row;
    the caption gives activation memory, the cost of downsampling late, and the estimated energy."""
    table = Table(title=title, title_justify="left")
    for column in ("layer", "output", "filters", "s1x1", "e1x1", "e3x3", "bypass", "params", "MACs", "activations"):
        table.add_column(column, justify="left" if column in ("layer", "filters", "bypass") else "right")
    for layer in summary.layers:
        h, w, c = layer.output_shape
        table.add_row(
            layer.name, f"{h}x{w}x{c}", layer.filters, _n(layer.squeeze), _n(layer.expand1x1), _n(layer.expand3x3),
            layer.bypass, _n(layer.params or None), _n(layer.macs or None), _n(layer.activations),
        )
    size = f"{summary.size_mb(bits):.2f} MB at {bits}-bit"
    table.add_section()
    table.add_row("total", "", size, "", "", "", "", _n(summary.params), _n(summary.macs), _n(summary.activations))
    table.caption = (f"activation memory (float32): {summary.activation_bytes() / MIB:.2f} MB all maps, "
                     f"{summary.peak_activation_bytes() / MIB:.2f} MB largest map; MB = MiB")
    if energy is not None:
        table.caption += f"\n{energy.describe()}"
    return table


def latency_table(report: LatencyReport) -> Table:
    """One row per runtime and batch size: median and p90 per call, and per image."""
    table = Table(title=f"inference latency, CPU: {report.source}", title_justify="left")
    for column in ("runtime", "batch", "median ms", "p90 ms", "median ms / image"):
        table.add_column(column, justify="left" if column == "runtime" else "right")
    for runtime, timings in report.timings.items():
        for timing in timings.values():
            table.add_row(runtime, str(timing.batch), f"{timing.median_ms:.3f}", f"{timing.p90_ms:.3f}",
                          f"{timing.median_ms / timing.batch:.3f}")
    repeats = next(t.repeats for timings in report.timings.values() for t in timings.values())
    jax_threads = "; JAX: XLA's own thread pool (every core)" if len(report.timings) > 1 else ""
    table.caption = (f"ONNX Runtime: {report.threads} intra-op thread(s){jax_threads}; "
                     f"{repeats} timed calls each, warm-up excluded")
    return table


class TrainProgress:
    """A live bar (epoch, step, loss, images/s) on a terminal; one line per epoch otherwise."""

    def __init__(self, console: Console):
        self.console = console
        self.live = console.is_terminal
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  {task.fields[ips]:.0f} img/s"), TimeRemainingColumn(),
            console=console, disable=not self.live,
        )
        self.task = None
        self.epochs = 0

    def __enter__(self) -> TrainProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def hooks(self) -> Hooks:
        return Hooks(on_start=self._start, on_step=self._step, on_epoch=self._epoch)

    def _start(self, info: dict) -> None:
        self.epochs = info["epochs"]
        if info["start_epoch"]:
            self.console.print(f"resuming after epoch {info['start_epoch']}")
        self.task = self.progress.add_task("train", total=info["steps_per_epoch"], epoch=info["start_epoch"] + 1,
                                           epochs=self.epochs, loss=float("nan"), ips=0.0)

    def _step(self, info: dict) -> None:
        self.progress.update(self.task, completed=info["step"], epoch=info["epoch"], loss=info["loss"], ips=info["images_per_s"])

    def _epoch(self, record: dict) -> None:
        self.console.print(
            f"epoch {record['epoch']}/{self.epochs}: train loss {record['train_loss']:.4f}, "
            f"val top-1 {record['val_top1']:.4f}, top-5 {record['val_top5']:.4f} ({record['epoch_train_s']:.0f} s)",
            highlight=False,
        )


def results_table(results: dict, workdir) -> Table:
    table = Table(title=f"run {workdir}: {results['status']}", title_justify="left", show_header=False)
    rows = [
        ("epochs", str(results["epochs_completed"])),
        ("test top-1 / top-5", f"{results.get('test_top1', float('nan')):.4f} / {results.get('test_top5', float('nan')):.4f}"),
        ("val top-1", f"{results.get('val_top1', float('nan')):.4f}"),
        ("params / size", f"{results['params']:,} / {results['model_size_mb']:.3f} MB"),
        ("MACs", f"{results['macs']:,}"),
        ("time compile / train / eval", f"{results['compile_s']:.1f} / {results['train_s']:.1f} / {results['eval_s']:.1f} s"),
        ("images/s", f"{results['images_per_s'] or 0:.0f}"),
        ("compilation cache hits / misses", f"{results['cache_hits']} / {results['cache_misses']}"),
    ]
    if results["status"] == TrialStatus.DIVERGED:
        rows.insert(0, ("diverged in epoch", str(results["diverged_epoch"])))
    for key, value in rows:
        table.add_row(key, value)
    return table


def sweep_progress_line(p) -> str:
    total = "?" if p.total is None else str(p.total)
    eta = "" if p.eta_s is None else f", ETA {p.eta_s / 60:.1f} min"
    return (f"trials {p.done}/{total} finished, {p.running} running, {p.pruned} pruned, {p.failed} failed; "
            f"best {p.best}{eta}")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def trials_table(trials, sweep, limit: int = 60) -> Table:
    """One row per trial of the results DataFrame (what the plots draw): status, swept values,
    objectives and size; the Pareto front (one objective: the best trials) starred."""
    from dse.results.analysis import pareto_front

    params = [p for p in [*sweep.space, *(["seed"] if sweep.sampler.name == "grid" else [])] if p in trials]
    objectives = [(o.metric, o.goal) for o in sweep.objectives]
    metrics = [m for m, _ in objectives if m in trials]
    extra = [m for m in OVERVIEW_METRICS if m not in metrics and m in trials]
    front = pareto_front(trials, objectives) if len(metrics) == len(objectives) and len(trials) else None
    table = Table(title=f"sweep {sweep.name}", title_justify="left")
    for column in ["#", "state", *params, *metrics, *extra, "note"]:
        table.add_column(column)
    for index, row in trials.tail(limit).iterrows():
        star = "*" if front is not None and front[index] else ""
        table.add_row(f"{row['number']}{star}", row["status"], *[_fmt(_value(row[p])) for p in [*params, *metrics, *extra]],
                      (row.get("reason") or "")[:60])
    return table


def _value(value):
    """A DataFrame cell as the table shows it: missing values blank, numpy scalars as Python ones."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value.item() if hasattr(value, "item") else value


def compression_table(result: dict) -> Table:
    """Deep Compression's Table 2 for one run: each step's size, ratio to float32 and accuracy."""
    settings = result["settings"]
    title = (f"{result['run_dir']}: {result['sparsity']:.0%} sparse, {result['bits_conv']}-bit convs, "
             f"{result['bits_classifier']}-bit classifier -> {result['file']}")
    table = Table(title=title, title_justify="left")
    for column in ("step", "bytes", "MB", "vs float32", "val top-1", "test top-1", "test top-5"):
        table.add_column(column, justify="left" if column == "step" else "right")
    for step in result["steps"]:
        table.add_row(step["step"], f"{step['size_bytes']:,}", f"{step['size_bytes'] / 2**20:.3f}", f"{step['ratio']:.1f}x",
                      f"{step['val_top1']:.2%}", f"{step['test_top1']:.2%}", f"{step['test_top5']:.2%}")
    table.caption = (f"pruning retrained {settings['prune_finetune_epochs']} epoch(s), centroids "
                     f"{settings['quant_finetune_epochs']}; the last row is the file, decoded and evaluated; MB = MiB")
    return table


def best_table(results, limit: int = 12) -> Table:
    """What a finished sweep found, from the DataFrame its plots draw: the Pareto front (several
    objectives) or the best trials (one), each with its settings and objective values."""
    from dse.results.analysis import pareto_front, row_label, swept_params
    from dse.results.metrics import metric

    trials, objectives = results.trials, results.objectives
    metrics = [o["metric"] for o in objectives]
    ranked = trials[trials["state"] == "COMPLETE"].dropna(subset=[m for m in metrics if m in trials])
    if len(metrics) > 1:
        title = "Pareto front"
        ranked = ranked[pareto_front(ranked, objectives)].sort_values(metrics[-1]) if len(ranked) else ranked
    else:
        title = "best trials"
        ranked = ranked.sort_values(metrics[0], ascending=objectives[0]["goal"] == "minimize") if len(ranked) else ranked
    table = Table(title=f"sweep {results.name}: {title} ({len(ranked)} of {len(trials)} trials)", title_justify="left")
    table.add_column("#", justify="right")
    for name in metrics:
        table.add_column(metric(name).axis_label, justify="right")
    table.add_column("settings")
    params = [p for p in swept_params(trials) if p in trials]
    for _, row in ranked.head(limit).iterrows():
        table.add_row(str(row["number"]), *[f"{row[m] * metric(m).scale:.4g}" for m in metrics], row_label(row, params))
    if len(ranked) > limit:
        table.caption = f"and {len(ranked) - limit} more: dse sweep status"
    if ranked.empty:
        table.caption = "no trial completed"
    return table


def benchmark_table(candidates, published) -> Table:
    """dse's compressed files (mean and range over seeds) above the benchmark's float32 entries."""
    table = Table(title="test top-1 vs bytes", title_justify="left")
    for column in ("network", "bytes", "test top-1", "seeds' range", "seeds"):
        table.add_column(column, justify="left" if column == "network" else "right")
    for row in candidates.itertuples(index=False):
        table.add_row(f"{row.name} ({row.settings})", f"{row.compressed_bytes:,.0f}", f"{100 * row.test_top1_compressed:.2f}%",
                      f"{100 * row.test_top1_compressed_min:.2f}-{100 * row.test_top1_compressed_max:.2f}%", str(row.seeds))
    table.add_section()
    for entry in published:
        size = "no size given" if entry.float32_bytes is None else f"{'<= ' if entry.at_most else ''}{entry.float32_bytes:,}"
        table.add_row(f"{entry.name} (float32)", size, f"{entry.test_top1:.1f}%", "", "")
    return table
