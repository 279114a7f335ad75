"""The ``dse`` command line: parses options and calls library functions, nothing more."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Annotated, Any

import pydantic
import typer
from rich.console import Console

from dse.contract import RunLayout, SweepLayout
from dse.errors import DseError, config_error

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Design-space exploration for SqueezeNet-family CNNs.")
# Piped output would otherwise be cut at 80 columns; the layer table needs about 110.
stdout = Console(width=None if sys.stdout.isatty() else 160)
stderr = Console(stderr=True)


def _given(**options: Any) -> dict[str, Any]:
    return {k: v for k, v in options.items() if v is not None}


@app.command()
def arch(
    preset: Annotated[str | None, typer.Option(help="squeezenet1_0, squeezenet1_1, squeezenet_small, or a baseline: "
                                               "mobilenet_v1, mobilenet_v2, shufflenet_v2, alexnet, resnet20/32/56")] = None,
    family: Annotated[str | None, typer.Option(help="squeezenet (default), mobilenet_v1, mobilenet_v2, shufflenet_v2, "
                                               "resnet or alexnet")] = None,
    width_multiplier: Annotated[float | None, typer.Option(help="baselines: widths times this (shufflenet_v2: 0.5, 1, "
                                                           "1.5, 2)")] = None,
    depth: Annotated[int | None, typer.Option(help="resnet: layers, 6n + 2 (20, 32, 56, ...)")] = None,
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
    num_fires: Annotated[int | None, typer.Option(help="Fire modules, 2-16 (the paper's 8)")] = None,
    downsample_at: Annotated[str | None, typer.Option(help="pool positions as fractions of depth, e.g. 0,0.5,1 ('' for none)")]
    = None,
    bits: Annotated[int, typer.Option(help="bits per parameter for the size column")] = 32,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
) -> None:
    """Print the layer table (shapes, widths, params, MACs, size) of one candidate."""
    from dse.arch import ArchConfig, expand, summarize
    from dse.arch.energy import estimate_energy
    from dse.console import arch_table

    shape = _numbers(input_shape, int, "--input-shape", "three integers H,W,C")
    pools = _numbers(downsample_at, float, "--downsample-at", "fractions like 0,0.25,0.5")
    options = _given(preset=preset, family=family, width_multiplier=width_multiplier, depth=depth, base_e=base_e,
                     incr_e=incr_e, freq=freq, pct3x3=pct3x3, sr=sr, stem=stem,
                     bypass=bypass, batch_norm=batch_norm, num_classes=num_classes, input_shape=shape,
                     num_fires=num_fires, downsample_at=pools)
    try:
        cfg = ArchConfig(**options)
    except pydantic.ValidationError as err:
        raise config_error(err, "dse arch") from None
    summary = summarize(expand(cfg))
    energy = estimate_energy(summary, weight_bytes=summary.size_bytes(bits))
    if as_json:
        print(json.dumps({"config": cfg.model_dump(mode="json"), **summary.to_dict(bits), "estimated_energy": energy.to_dict()},
                         indent=2))
    else:
        title = preset or ("custom SqueezeNet" if cfg.family == "squeezenet" else f"custom {cfg.family}")
        stdout.print(arch_table(summary, title, bits, energy))


def _numbers(text: str | None, kind: type, option: str, expected: str) -> tuple | None:
    """``"227,227,3"`` -> ``(227, 227, 3)``; an empty string is an empty tuple, None stays None."""
    if text is None:
        return None
    try:
        return tuple(kind(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise DseError(f"{option}={text!r}: expected {expected}") from None


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
    from dse.train.devices import one_cpu_device_per_core

    _crash_log_in(RunLayout(workdir).crash_log)
    overrides = list(set_ or []) + ([f"epochs={epochs}"] if epochs is not None else [])
    cfg = config_io.load(TrainConfig, config, overrides)
    one_cpu_device_per_core()
    with TrainProgress(stdout) as progress:
        results = train_and_evaluate(cfg, workdir, hooks=progress.hooks())
    stdout.print(results_table(results, workdir))


@app.command()
def compress(
    run_dir: Annotated[Path, typer.Argument(help="a trained run folder (dse train --workdir), with its checkpoints")],
    sparsity: Annotated[float, typer.Option(help="share of conv weights pruned, in [0, 1)")] = 0.33,
    bits: Annotated[int, typer.Option(help="bits per kept weight (2-8)")] = 8,
    bits_conv: Annotated[int | None, typer.Option(help="override --bits for the convs")] = None,
    bits_classifier: Annotated[int | None, typer.Option(help="override --bits for conv10")] = None,
    scope: Annotated[str, typer.Option(help="per_layer or global pruning threshold")] = "per_layer",
    prune_epochs: Annotated[int, typer.Option(help="masked retraining epochs after pruning")] = 1,
    quant_epochs: Annotated[int, typer.Option(help="centroid fine-tuning epochs after weight sharing")] = 1,
    set_: Annotated[list[str] | None, typer.Option("--set", help="any other compress setting, e.g. --set kmeans_iterations=50")]
    = None,
    output: Annotated[Path | None, typer.Option(help="folder for model.dsez and compress.json (default RUN_DIR/compressed)")]
    = None,
) -> None:
    """Deep Compression of a trained run: prune, retrain, share weights, Huffman-code into a file (Table 2)."""
    from dse import config_io
    from dse.compress.config import CompressConfig
    from dse.console import compression_table

    _crash_log_in(RunLayout(run_dir).crash_log)
    given = {"sparsity": sparsity, "bits": bits, "bits_conv": bits_conv, "bits_classifier": bits_classifier, "scope": scope,
             "prune_finetune_epochs": prune_epochs, "quant_finetune_epochs": quant_epochs}
    settings = config_io.parse(CompressConfig, config_io.set_dotted(_given(**given), config_io.parse_overrides(set_ or [])),
                               "dse compress")
    from dse.compress.pipeline import compress_run

    result = compress_run(run_dir, settings, output)
    stdout.print(compression_table(result))


@app.command()
def evaluate(file: Annotated[Path, typer.Argument(help="a compressed model file (.dsez)")]) -> None:
    """Decode a compressed model file and evaluate it on the test split of its dataset."""
    from dse.compress.pipeline import evaluate_file

    result = evaluate_file(file)
    stdout.print(f"{file}: {result['size_bytes']:,} bytes, test top-1 {result['test_top1']:.4f}, "
                 f"top-5 {result['test_top5']:.4f}, loss {result['test_loss']:.4f}", highlight=False)


@app.command()
def export(
    source: Annotated[Path, typer.Argument(help="a trained run folder (its last checkpoint) or a compressed .dsez file")],
    output: Annotated[Path, typer.Option(help="the file to write")],
    format_: Annotated[str, typer.Option("--format", help="export format: onnx")] = "onnx",
) -> None:
    """Export a trained or compressed network for inference: ONNX, NHWC float32 pixels in [0, 1] -> logits."""
    from dse.deploy.onnx_export import export_model

    result = export_model(source, output, format_)
    stdout.print(f"{source} -> {result['file']}: {result['bytes']:,} bytes, {result['format']} opset {result['opset']}, "
                 f"input {result['input']}, output {result['output']}", highlight=False)


@app.command()
def latency(
    source: Annotated[Path, typer.Argument(help="a run folder or .dsez file (ONNX Runtime and JAX), or an .onnx file")],
    threads: Annotated[int, typer.Option(help="ONNX Runtime intra-op threads (1: independent of the machine's load)")] = 1,
    repeats: Annotated[int, typer.Option(help="timed calls per measurement, after untimed warm-up calls")] = 50,
) -> None:
    """Median and p90 inference latency at batch 1 and 64 on the CPU, in ONNX Runtime and jitted JAX."""
    from dse.console import latency_table
    from dse.deploy.latency import measure_path_latency

    stdout.print(latency_table(measure_path_latency(source, threads=threads, repeats=repeats)))


sweep_app = typer.Typer(no_args_is_help=True, help="Run, join, inspect and export Optuna sweeps.")
app.add_typer(sweep_app, name="sweep")
ResultsRoot = Annotated[Path, typer.Option(help="folder holding one results folder per sweep")]
StorageOption = Annotated[str | None, typer.Option(help="database URL (default: the sweep file's, else the embedded journal)")]


@sweep_app.command("validate")
def sweep_validate(file: Annotated[Path, typer.Argument(help="sweep YAML")]) -> None:
    """Check a sweep file and print the size of its design space."""
    from dse.sweep.config import load_sweep

    sweep = load_sweep(file)
    size = sweep.design_space_size()
    grid = "continuous (no grid)" if size is None else f"{size // sweep.repeats} points x {sweep.repeats} seeds = {size} trials"
    stdout.print(f"{file}: ok: sweep {sweep.name!r}, {len(sweep.space)} swept fields, design space {grid}, "
                 f"sampler {sweep.sampler.name}, objectives {', '.join(o.metric + ' ' + o.goal for o in sweep.objectives)}",
                 highlight=False)


@sweep_app.command("run")
def sweep_run(
    file: Annotated[Path, typer.Argument(help="sweep YAML")],
    workers: Annotated[int, typer.Option(min=1, help="worker processes (local) or Ray actors (ray)")] = 1,
    storage: StorageOption = None,
    trials: Annotated[int | None, typer.Option(min=1, help="trials for the whole study (overrides budget.trials)")] = None,
    results_root: ResultsRoot = Path("results"),
    launcher: Annotated[str, typer.Option(help="local: processes on this machine; ray: actors on a Ray cluster")] = "local",
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster to join, host:port (default: RAY_ADDRESS, else "
                                                    "a local Ray instance)")] = None,
    cpus_per_worker: Annotated[float | None, typer.Option(min=0.01, help="ray: cores per worker (overrides "
                                                          "resources.cpus_per_worker)")] = None,
    gpus_per_worker: Annotated[float | None, typer.Option(min=0, help="ray: GPUs per worker, fractions share one "
                                                          "(overrides resources.gpus_per_worker)")] = None,
) -> None:
    """Create or resume the study, train with N workers, then export tables and plots."""
    from dse.console import sweep_progress_line
    from dse.sweep.runner import Launch, run_sweep

    launch = Launch(launcher, ray_address, cpus_per_worker, gpus_per_worker)

    _sweep_file_layout(file, results_root)
    # One permanent line whenever a trial starts or ends (a log that reads well in CI
    # or a file); on a terminal, a status line below it keeps the ETA ticking in place.
    last = {"event": None}
    live = stdout.status("starting workers") if stdout.is_terminal else contextlib.nullcontext()

    def show(progress) -> None:
        line = sweep_progress_line(progress)
        event = (progress.done, progress.running, progress.pruned, progress.failed, progress.best)
        if event != last["event"]:
            stdout.print(line, highlight=False)
            last["event"] = event
        if stdout.is_terminal:
            live.update(line)

    with live:
        study = run_sweep(file, workers=workers, url=storage, trials=trials, results_root=results_root, on_progress=show,
                          launch=launch)
    loaded = _export_and_plot(results_root / study.study_name, storage)
    from dse.console import best_table

    stdout.print(best_table(loaded))
    where = "" if results_root == Path("results") else f" --results-root {results_root}"
    store = f" --storage {storage}" if storage else ""
    stdout.print(f"look further: dse sweep status {file}{where}{store} · dse sweep plot {file}{where}{store} · "
                 f"dse dashboard {results_root / study.study_name}{store}", highlight=False, soft_wrap=True)


def _export_and_plot(results_dir: Path, storage: str | None):
    from dse import results as dse_results

    loaded = dse_results.load(results_dir, storage=storage)
    written = dse_results.export(loaded) + dse_results.draw_all(loaded)
    stdout.print(f"wrote {len(written)} files under {results_dir}", highlight=False)
    return loaded


@sweep_app.command("worker")
def sweep_worker(
    file: Annotated[Path, typer.Argument(help="sweep YAML")],
    storage: StorageOption = None,
    worker_index: Annotated[int, typer.Option(min=0, help="offsets the sampler seed so workers differ")] = 0,
    trials: Annotated[int | None, typer.Option(min=1)] = None,
    results_root: ResultsRoot = Path("results"),
) -> None:
    """Join a study (e.g. on a shared PostgreSQL) and train trials until its budget is spent."""
    from dse.sweep.runner import run_worker
    from dse.sweep.storage import mask
    from dse.train.devices import one_cpu_device_per_core

    _sweep_file_layout(file, results_root)
    one_cpu_device_per_core()  # a worker pinned to one core gets one device
    ran = run_worker(file, url=storage, worker_index=worker_index, trials=trials, results_root=results_root)
    stdout.print(f"worker {worker_index} done: {ran} trials on {mask(storage)}", highlight=False)


@sweep_app.command("proxy")
def sweep_proxy(
    storage: Annotated[str, typer.Option(help="the database the proxy serves, postgresql://user:pass@host/db")],
    host: Annotated[str, typer.Option(help="address to listen on: loopback or the cluster's private network only "
                                      "(the proxy has no TLS and no authentication)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 13000,
) -> None:
    """Serve a study database to many workers through Optuna's gRPC storage proxy (workers: --storage grpc://HOST:PORT)."""
    from dse.sweep.storage import mask, serve_proxy

    stdout.print(f"serving {mask(storage)} on grpc://{host}:{port} (Ctrl-C stops)", highlight=False)
    serve_proxy(storage, host, port)


SWEEP_SUFFIXES = (".yaml", ".yml")


def _sweep_layout(name_or_dir: str | Path, results_root: Path) -> SweepLayout:
    """The results folder named on the command line (a folder, a sweep file, or a sweep name under
    ``results_root``); this command's unexpected errors are logged there."""
    path = Path(name_or_dir)
    if path.is_file() and path.suffix in SWEEP_SUFFIXES:
        return _sweep_file_layout(path, results_root)
    layout = SweepLayout(path if path.is_dir() else results_root / name_or_dir)
    _crash_log_in(layout.crash_log)
    return layout


def _sweep_file_layout(file: Path, results_root: Path) -> SweepLayout:
    from dse.sweep.config import load_sweep

    layout = SweepLayout(results_root / load_sweep(file).name)
    _crash_log_in(layout.crash_log)
    return layout


@sweep_app.command("status")
def sweep_status(
    name_or_dir: Annotated[str, typer.Argument(help="sweep file, sweep name or results folder")],
    storage: StorageOption = None,
    results_root: ResultsRoot = Path("results"),
) -> None:
    """Table of trials, with the best trial (or the Pareto set) starred."""
    from dse.console import sweep_progress_line, trials_table
    from dse.results.frames import frames_from_study
    from dse.sweep.config import load_sweep
    from dse.sweep.runner import progress_of
    from dse.sweep.study import open_study, storage_url
    from dse.sweep.worker import budget_total

    layout = _sweep_layout(name_or_dir, results_root)
    if not layout.sweep_file.exists():
        raise DseError(f"{layout.root}: no sweep results here (expected {layout.sweep_file})")
    sweep = load_sweep(layout.sweep_file)
    if storage_url(sweep, storage) is None and not layout.journal.exists():  # status reads; it creates no study
        raise DseError(f"{layout.root}: no {layout.journal.name} yet (dse sweep run starts the study)")
    study = open_study(sweep, layout.root, storage_url(sweep, storage))
    trials, _, _ = frames_from_study(study, sweep.model_dump(mode="json"))
    stdout.print(trials_table(trials, sweep))
    stdout.print(sweep_progress_line(progress_of(study, sweep, budget_total(sweep, None))), highlight=False)


@sweep_app.command("export")
def sweep_export(
    name_or_dir: Annotated[str, typer.Argument(help="sweep file, sweep name or results folder")],
    storage: StorageOption = None,
    results_root: ResultsRoot = Path("results"),
) -> None:
    """Write trials and per-epoch curves as Parquet and CSV, and draw the plots."""
    _export_and_plot(_sweep_layout(name_or_dir, results_root).root, storage)


@sweep_app.command("plot")
@app.command()
def plot(
    name_or_dir: Annotated[str, typer.Argument(help="sweep file, sweep name or results folder")],
    storage: StorageOption = None,
    results_root: ResultsRoot = Path("results"),
) -> None:
    """Draw the sweep's plots (PNG and SVG) under <results>/plots/."""
    from dse import results as dse_results

    paths = dse_results.draw_all(dse_results.load(_sweep_layout(name_or_dir, results_root).root, storage=storage))
    for path in paths:
        stdout.print(str(path), highlight=False)


@app.command()
def benchmark(
    compressed: Annotated[list[Path], typer.Argument(help="compression folders (dse compress --output)")],
    output: Annotated[Path, typer.Option(help="the figure to write (.png or .svg)")],
    sweep: Annotated[str | None, typer.Option(help="also draw this sweep's front of compressed files")] = None,
    results_root: ResultsRoot = Path("results"),
) -> None:
    """Compressed files against the Fashion-MNIST benchmark: test top-1 as decoded vs bytes, mean and range over seeds."""
    from dse import results as dse_results
    from dse.console import benchmark_table
    from dse.results.benchmark import compressed_files, fashion_mnist_benchmark, front_vs_benchmark, over_seeds

    candidates, published = over_seeds(compressed_files(compressed)), fashion_mnist_benchmark()
    trials = dse_results.load(_sweep_layout(sweep, results_root).root).trials if sweep else None
    output.parent.mkdir(parents=True, exist_ok=True)
    caption = "dse's files: test top-1 as decoded; benchmark: the dataset's table"
    front_vs_benchmark(candidates, published, trials, caption=caption).savefig(output)
    stdout.print(benchmark_table(candidates, published))
    stdout.print(str(output), highlight=False)


@app.command()
def dashboard(
    name_or_dir: Annotated[str, typer.Argument(help="sweep file, sweep name or results folder")],
    storage: StorageOption = None,
    results_root: ResultsRoot = Path("results"),
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8080,
) -> None:
    """Browse the study in optuna-dashboard, served on loopback (http://127.0.0.1:PORT)."""
    from dse.sweep.storage import mask, open_storage, serve_dashboard

    layout = _sweep_layout(name_or_dir, results_root)
    if storage is None and not layout.journal.exists():
        raise DseError(f"{layout.root}: no {layout.journal.name} here (give the sweep's results folder, or --storage)")
    stdout.print(f"optuna-dashboard on http://127.0.0.1:{port} for {mask(storage) if storage else layout.journal} "
                 "(Ctrl-C stops)", highlight=False)
    serve_dashboard(open_storage(storage, layout.root), port)


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="print the traceback of an unexpected error (also DSE_DEBUG=1)")] = False,
) -> None:
    """Design-space exploration for SqueezeNet-family CNNs."""
    from dse.train.devices import check_device_count_variable

    _session.debug = _session.debug or debug
    check_device_count_variable()


@dataclasses.dataclass
class _Session:
    """What the top-level handler needs to know about the command that is running."""

    debug: bool = os.environ.get("DSE_DEBUG", "") not in ("", "0")
    crash_log: Path | None = None  # the run's or sweep's folder, once the command knows it


_session = _Session()


def _crash_log_in(path: Path) -> None:
    """Unexpected errors of this command write their traceback to ``path``."""
    _session.crash_log = path


def _write_crash_log() -> Path:
    text = f"dse {' '.join(sys.argv[1:])}\n{traceback.format_exc()}"
    for path in (_session.crash_log, Path(tempfile.gettempdir()) / f"dse-crash-{os.getpid()}.log"):
        if path is None:
            continue
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            return path
        except OSError:
            continue  # an unwritable folder: fall back to the temporary one
    raise RuntimeError("no writable place for the crash log")


def main() -> None:
    """Entry point. User errors: one line on stderr, exit 2 (click's usage errors too). Anything
    else is a bug: one line naming it and the file holding its traceback, exit 1 (``--debug`` or
    ``DSE_DEBUG=1`` print the traceback instead)."""
    try:
        app()
    except DseError as err:
        stderr.print(f"dse: error: {err}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        stderr.print("dse: interrupted", markup=False, highlight=False)
        sys.exit(130)
    except Exception as err:
        if _session.debug:
            traceback.print_exc()
            sys.exit(1)
        log = _write_crash_log()
        problem = str(err).strip().splitlines()[0] if str(err).strip() else ""
        stderr.print(f"dse: internal error: {type(err).__name__}{': ' + problem if problem else ''} "
                     f"(traceback in {log}; --debug prints it)", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)
