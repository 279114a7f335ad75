"""The ``dse`` command line: parses options and calls library functions, nothing more."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import pydantic
import typer
from rich.console import Console

from dse.errors import DseError, config_error

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Design-space exploration for SqueezeNet-family CNNs.")
# Piped output would otherwise be cut at 80 columns; the layer table needs about 110.
stdout = Console(width=None if sys.stdout.isatty() else 160)
stderr = Console(stderr=True)


def _given(**options: Any) -> dict[str, Any]:
    return {k: v for k, v in options.items() if v is not None}


@app.command()
def arch(
    preset: Annotated[str | None, typer.Option(help="squeezenet1_0, squeezenet1_1 or squeezenet_small")] = None,
    base_e: Annotated[int | None, typer.Option(help="expand filters of fire2")] = None,
    incr_e: Annotated[int | None, typer.Option(help="expand filters added every freq modules")] = None,
    freq: Annotated[int | None, typer.Option(help="modules between width increments")] = None,
    pct3x3: Annotated[float | None, typer.Option(help="share of 3x3 expand filters, in [0, 1]")] = None,
    sr: Annotated[float | None, typer.Option(help="squeeze ratio, in (0, 1]")] = None,
    stem: Annotated[str | None, typer.Option(help="v1.0, v1.1 or small")] = None,
    bypass: Annotated[str | None, typer.Option(help="none, simple or complex")] = None,
    batch_norm: Annotated[bool | None, typer.Option("--batch-norm/--no-batch-norm")] = None,
    num_classes: Annotated[int | None, typer.Option()] = None,
    input_shape: Annotated[str | None, typer.Option(help="H,W,C, e.g. 227,227,3")] = None,
    bits: Annotated[int, typer.Option(help="bits per parameter for the size column")] = 32,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
) -> None:
    """Print the layer table (shapes, widths, params, MACs, size) of one candidate."""
    from dse.arch import ArchConfig, expand, summarize
    from dse.console import arch_table

    shape = None
    if input_shape is not None:
        try:
            shape = tuple(int(v) for v in input_shape.split(","))
        except ValueError:
            raise DseError(f"--input-shape={input_shape!r}: expected three integers H,W,C") from None
    options = _given(preset=preset, base_e=base_e, incr_e=incr_e, freq=freq, pct3x3=pct3x3, sr=sr, stem=stem,
                     bypass=bypass, batch_norm=batch_norm, num_classes=num_classes, input_shape=shape)
    try:
        cfg = ArchConfig(**options)
    except pydantic.ValidationError as err:
        raise config_error(err, "dse arch") from None
    summary = summarize(expand(cfg))
    if as_json:
        print(json.dumps({"config": cfg.model_dump(mode="json"), **summary.to_dict(bits)}, indent=2))
    else:
        stdout.print(arch_table(summary, preset or "custom SqueezeNet", bits))


@app.command()
def train(
    config: Annotated[Path | None, typer.Argument(help="YAML training config (optional)")] = None,
    workdir: Annotated[Path, typer.Option(help="run directory; an existing checkpoint there is resumed")] = Path("results/train"),
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a key, e.g. --set model.sr=0.25")] = None,
    epochs: Annotated[int | None, typer.Option(help="shorthand for --set epochs=N")] = None,
) -> None:
    """Train one network (from a YAML config and/or --set overrides) and report its results."""
    from dse import config_io
    from dse.console import TrainProgress, results_table
    from dse.train import TrainConfig, train_and_evaluate

    overrides = list(set_ or []) + ([f"epochs={epochs}"] if epochs is not None else [])
    cfg = config_io.load(TrainConfig, config, overrides)
    with TrainProgress(stdout) as progress:
        results = train_and_evaluate(cfg, workdir, hooks=progress.hooks())
    stdout.print(results_table(results, workdir))


@app.callback()
def _root() -> None:
    """Design-space exploration for SqueezeNet-family CNNs."""


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2 (click's usage errors too)."""
    try:
        app()
    except DseError as err:
        stderr.print(f"dse: error: {err}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(err.exit_code)
