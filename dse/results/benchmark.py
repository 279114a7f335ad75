"""Compressed files beside published results: the accuracy-per-byte picture.

A published entry is drawn at its float32 size (4 bytes per parameter): the size its
authors ship, with no compression. Fashion-MNIST's benchmark table (zalandoresearch's,
as collected in the project's reference notes) gives parameter counts for three entries;
two more are standard architectures whose count with a 10-class head on 28x28x1 input
dse's generator computes, ResNet-18's is the standard one, and one entry gives no size
(drawn as a line across the plot). dse's own points are ``.dsez`` files: each compression
folder's ``compress.json`` holds the file's bytes and its accuracy as decoded, and the
trained run's config, its seed. Runs that differ only by seed are one point: the mean,
with the seeds' range as the bar.
"""

from __future__ import annotations

import hashlib
import json
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator

from dse.contract import CompressedLayout, RunLayout
from dse.errors import DataError
from dse.results.analysis import pareto_front
from dse.results.labels import place_labels

# A sweep's front of files: its trials' bytes against their test top-1 as decoded.
FILE_OBJECTIVES = {"compressed_bytes": "minimize", "test_top1_compressed": "maximize"}


@dataclass(frozen=True)
class Published:
    name: str
    test_top1: float  # %
    params: int | None  # None: the table gives no size
    size_source: str
    at_most: bool = False  # the table gives an upper bound ("under 100K parameters")

    @property
    def float32_bytes(self) -> int | None:
        return None if self.params is None else 4 * self.params


def _generated_params(preset: str) -> int:
    from dse.arch import ArchConfig, expand, summarize

    return summarize(expand(ArchConfig(preset=preset, num_classes=10, input_shape=(28, 28, 1)))).params


def fashion_mnist_benchmark() -> tuple[Published, ...]:
    """The Fashion-MNIST benchmark's entries, with where each size comes from."""
    dse_count = "count by dse's generator (10 classes, 28x28x1)"
    return (
        Published("SqueezeNet", 90.0, _generated_params("squeezenet1_1"), f"v1.1, {dse_count}"),
        Published("2-conv net", 92.5, 100_000, "the table: under 100K parameters", at_most=True),
        Published("2 conv + pool + BN", 93.4, None, "the table gives no size"),
        Published("ResNet-18", 94.9, 11_173_962, "the standard ResNet-18 with a 10-class head"),
        Published("MobileNet", 95.0, _generated_params("mobilenet_v1"), f"v1, {dse_count}"),
        Published("DenseNet-BC", 95.4, 768_000, "the table: 768K parameters"),
        Published("WRN-40-4", 96.7, 8_900_000, "the table: 8.9M parameters"),
    )


def compressed_files(folders: Sequence[str | Path]) -> pd.DataFrame:
    """One row per compression folder: its file's bytes, accuracies as decoded, settings and seed.

    ``config`` names the training config and compress settings without the seed (a short
    digest), so seeds of one candidate share it; ``name`` is the run folder's name without a
    trailing seed suffix (``p38_s42`` -> ``p38``).
    """
    rows = []
    for folder in map(Path, folders):
        path = CompressedLayout(folder).report if folder.is_dir() else folder
        try:
            report = json.loads(path.read_text())
            run_dir = Path(report["run_dir"])
            train = json.loads(RunLayout(run_dir).config.read_text())
            rows.append({
                "name": re.sub(r"[_-]s(eed)?\d+$", "", run_dir.name),
                "config": _digest({**train, "seed": None}, report["settings"]),
                "seed": train["seed"], "file": report["file"], "compressed_bytes": report["compressed_bytes"],
                "test_top1_compressed": report["test_top1_compressed"],
                "val_top1_compressed": report["val_top1_compressed"],
                "float32_test_top1": report["steps"][0]["test_top1"], "float32_bytes": report["float32_bytes"],
                # The float32 model is 4 bytes per trained parameter (BatchNorm's included).
                "params": report["float32_bytes"] // 4, "settings": _settings_text(report), "epochs": train["epochs"]})
        except (OSError, ValueError, KeyError, TypeError) as err:
            detail = f"{type(err).__name__}: {err}" if not isinstance(err, OSError) else err.strerror
            raise DataError(f"{path}: not a dse compress report ({detail})") from None
    return pd.DataFrame(rows)


def over_seeds(files: pd.DataFrame) -> pd.DataFrame:
    """One row per candidate: mean, min and max over its seeds of bytes and test top-1 as decoded."""
    stats = {"test_top1_compressed": ["mean", "min", "max"], "compressed_bytes": ["mean", "min", "max"],
             "float32_test_top1": ["mean"], "seed": ["count"]}
    grouped = files.groupby(["config", "name", "settings", "params", "epochs"], sort=False).agg(stats)
    grouped.columns = [f"{column}_{stat}" if stat != "mean" else column for column, stat in grouped.columns]
    return grouped.rename(columns={"seed_count": "seeds"}).reset_index().sort_values("compressed_bytes")


def front_vs_benchmark(candidates: pd.DataFrame, published: Sequence[Published] = (),
                       sweep_trials: pd.DataFrame | None = None, *, caption: str = "") -> Figure:
    """Test top-1 against bytes (log axis): dse's files (``over_seeds`` rows), a sweep's front of
    compressed files (its trials' ``compressed_bytes`` and ``test_top1_compressed``) and the
    published entries at their float32 sizes."""
    from dse.results.figure_parts import key_panel, log_x, new_figure

    fig, (ax, key_ax) = new_figure("Accuracy per byte: dse's compressed files vs the Fashion-MNIST benchmark",
                                   caption, candidates, ncols=2, figsize=(11, 5.2), width_ratios=(3, 1.9))
    points, texts = [], []
    floor = min([100 * candidates["test_top1_compressed_min"].min(), *(entry.test_top1 for entry in published)]) - 3
    if sweep_trials is not None and set(FILE_OBJECTIVES) <= set(sweep_trials):
        front = sweep_trials[pareto_front(sweep_trials, FILE_OBJECTIVES)].sort_values("compressed_bytes")
        # The axis is set by the files and the entries: a short-trained front lies far below them.
        below = int((100 * front["test_top1_compressed"] < floor).sum())
        ax.plot(front["compressed_bytes"], 100 * front["test_top1_compressed"], "-o", color="C1", ms=4, alpha=0.7,
                label=f"sweep front, short training ({len(front)}{f'; {below} below the axis' if below else ''})")
    ax.errorbar(candidates["compressed_bytes"], 100 * candidates["test_top1_compressed"],
                yerr=[100 * (candidates["test_top1_compressed"] - candidates["test_top1_compressed_min"]),
                      100 * (candidates["test_top1_compressed_max"] - candidates["test_top1_compressed"])],
                fmt="o", color="C3", capsize=3, zorder=4, label="dse .dsez files (mean, seeds' range)")
    key = []
    for i, row in enumerate(candidates.itertuples(index=False), start=1):
        points.append((row.compressed_bytes, 100 * row.test_top1_compressed))
        texts.append(str(i))
        spread = f"{100 * row.test_top1_compressed_min:.2f}-{100 * row.test_top1_compressed_max:.2f}"
        seeds = f"{row.seeds} seed{'s' if row.seeds > 1 else ''}"
        key.append(f"{i:>2}  {100 * row.test_top1_compressed:.2f}% ({spread}, {seeds}) "
                   f"{row.compressed_bytes / 1000:.1f} kB  {row.name}: {row.params:,} params, {row.epochs} epochs, "
                   f"{row.settings}")
    sized = [entry for entry in published if entry.float32_bytes is not None]
    for entry in sized:
        ax.scatter([entry.float32_bytes], [entry.test_top1], marker="<" if entry.at_most else "X", color="black",
                   s=40, zorder=3)
        points.append((entry.float32_bytes, entry.test_top1))
        texts.append(f"{'≤ ' if entry.at_most else ''}{entry.name} {entry.test_top1:.1f}%")
    if sized:
        ax.scatter([], [], marker="X", color="black", label="benchmark entries, float32 (< : an upper bound)")
    for entry in published:
        if entry.float32_bytes is None:
            ax.axhline(entry.test_top1, color="0.4", ls=":", lw=1, label=f"{entry.name} {entry.test_top1:.1f}% (no size)")
    key += ["", "Benchmark entries' sizes (float32, 4 bytes each):"]
    key += [f"    {entry.name}: {entry.size_source}" for entry in published]
    ax.margins(x=0.08, y=0.1)
    ax.set_ylim(bottom=floor)
    log_x(ax)
    # Four decades of bytes: 1-2-5 ticks would collide, so decades only, in kB and MB.
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0,)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: _bytes_text(value)))
    ax.set_xlabel("bytes (log scale): dse's .dsez files, the benchmark's float32 weights")
    ax.set_ylabel("test top-1 (%)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    key_panel(key_ax, "dse's files, by size", key)
    place_labels(ax, points, texts)
    return fig


def _bytes_text(value: float) -> str:
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if value >= scale:
            return f"{value / scale:g} {unit}"
    return f"{value:g} B"


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _settings_text(report: dict) -> str:
    """The compression asked for (``settings`` as dumped, every field present) and the bits it used per kind."""
    settings = report["settings"]
    tuning = f"{settings['prune_finetune_epochs']}+{settings['quant_finetune_epochs']} epochs tuning"
    return textwrap.shorten(f"sparsity {settings['sparsity']:g} ({settings['scope']}), {report['bits_conv']}-bit convs, "
                            f"{report['bits_classifier']}-bit conv10, {tuning}", 100)
