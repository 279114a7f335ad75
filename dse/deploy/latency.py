"""Inference latency on the CPU: ONNX Runtime on the exported graph, and the jitted JAX model.

Each timing runs the call ``warmup`` times untimed (compilation, allocation, caches) and
then ``repeats`` times, and reports the median and the 90th percentile in milliseconds
of one call at that batch size (the whole batch, not per image). Inputs are random
pixels in [0, 1]; both runtimes include the input normalisation.

ONNX Runtime gets ``threads`` intra-op threads (default 1) and one inter-op thread. One
thread by default because a design-space sweep trains on every core at once: a
single-threaded inference is the number that does not depend on what else the machine
runs, compares across candidates, and is the per-core cost an embedded deployment pays.
XLA's CPU thread pool is fixed when JAX starts (all cores), so the JAX timing states it
but cannot change it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dse.deploy.inference_model import InferenceModel

DEFAULT_THREADS = 1
DEFAULT_REPEATS = 50
DEFAULT_WARMUP = 5
BATCH_SIZES = (1, 64)
ONNXRUNTIME, JAX = "onnxruntime", "jax"


@dataclass(frozen=True)
class Timing:
    """Wall time of one call at one batch size, over ``repeats`` timed calls."""

    batch: int
    median_ms: float
    p90_ms: float
    repeats: int


@dataclass(frozen=True)
class LatencyReport:
    """Timings by runtime, then by batch size; ``threads`` is ONNX Runtime's intra-op thread count."""

    threads: int
    timings: dict[str, dict[int, Timing]] = field(default_factory=dict)
    source: str = ""

    def metrics(self) -> dict[str, float]:
        """The latency metrics of :data:`dse.contract.METRICS` this report holds."""
        found = {"latency_ms": (ONNXRUNTIME, 1), "latency_jax_ms": (JAX, 1), "latency_b64_ms": (ONNXRUNTIME, 64)}
        return {name: self.timings[runtime][batch].median_ms for name, (runtime, batch) in found.items()
                if batch in self.timings.get(runtime, {})}


def time_calls(call: Callable[[], Any], batch: int, repeats: int = DEFAULT_REPEATS, warmup: int = DEFAULT_WARMUP) -> Timing:
    """Median and 90th percentile of ``call()``'s wall time, after ``warmup`` untimed calls."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats={repeats}, warmup={warmup}: need repeats >= 1 and warmup >= 0")
    for _ in range(warmup):
        call()
    times = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        call()
        times[i] = time.perf_counter() - start
    return Timing(batch, 1000.0 * float(np.median(times)), 1000.0 * float(np.percentile(times, 90)), repeats)


def random_images(input_shape: Sequence[int], batch: int, seed: int = 0) -> np.ndarray:
    """A batch of 8-bit-like pixels in [0, 1], NHWC float32: what an exported model is fed."""
    return np.random.default_rng(seed).integers(0, 256, (batch, *input_shape)).astype(np.float32) / 255.0


def onnxruntime_session(onnx_model: bytes | str | Path, threads: int = DEFAULT_THREADS):
    """A CPU ONNX Runtime session with ``threads`` intra-op threads, one inter-op thread, all graph optimisations.

    Raises:
        DataError: a file or bytes ONNX Runtime cannot load.
    """
    import onnxruntime as ort

    from dse.errors import DataError

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    model = str(onnx_model) if isinstance(onnx_model, Path) else onnx_model
    try:
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime has its own exception types for an unloadable model
        name = model if isinstance(model, str) else "ONNX model"
        raise DataError(f"{name}: not a loadable ONNX model ({str(err).strip().splitlines()[0][:200]})") from None


def onnxruntime_timing(session, batch: int, repeats: int = DEFAULT_REPEATS, warmup: int = DEFAULT_WARMUP) -> Timing:
    """Latency of ``session`` (an exported dse model) on one random batch."""
    spec = session.get_inputs()[0]
    images = random_images(spec.shape[1:], batch)
    return time_calls(lambda: session.run(None, {spec.name: images}), batch, repeats, warmup)


def jax_forward(model: InferenceModel) -> Callable[[np.ndarray], Any]:
    """The jitted Flax forward pass of ``model`` on [0, 1] pixels (normalisation included, as in the ONNX graph)."""
    import jax

    from dse.arch import build_model

    network = build_model(model.spec)
    params = jax.device_put(model.params)
    mean, std = model.mean, model.std
    forward = jax.jit(lambda p, x: network.apply({"params": p}, (x - mean) / std, train=False))
    return lambda images: forward(params, images)


def jax_timing(model: InferenceModel, batch: int, repeats: int = DEFAULT_REPEATS, warmup: int = DEFAULT_WARMUP) -> Timing:
    """Latency of the jitted JAX model on one random batch; the warm-up calls include its compilation."""
    import jax

    forward = jax_forward(model)
    images = jax.device_put(random_images(model.input_shape, batch))
    return time_calls(lambda: forward(images).block_until_ready(), batch, repeats, max(1, warmup))


def measure_latency(model: InferenceModel | None = None, onnx_model: bytes | str | Path | None = None, *,
                    threads: int = DEFAULT_THREADS, repeats: int = DEFAULT_REPEATS, warmup: int = DEFAULT_WARMUP,
                    batch_sizes: Sequence[int] = BATCH_SIZES, jax_batch_sizes: Sequence[int] | None = None) -> LatencyReport:
    """Time ONNX Runtime and JAX inference at each batch size.

    Args:
        model: the network; exported to ONNX in memory when ``onnx_model`` is not given, and
            timed in JAX. Without it (an ONNX file alone) only ONNX Runtime is timed.
        onnx_model: an exported model (bytes or file).
        threads: ONNX Runtime intra-op threads (see the module docstring for the default of 1).
        repeats, warmup: timed and untimed calls per measurement.
        batch_sizes: batch sizes for ONNX Runtime.
        jax_batch_sizes: batch sizes for JAX (default: ``batch_sizes``); each costs one compilation.

    Returns:
        A :class:`LatencyReport`.
    """
    if model is None and onnx_model is None:
        raise ValueError("measure_latency needs a model or an ONNX file")
    if threads < 1:
        raise ValueError(f"threads={threads}: must be >= 1")
    if onnx_model is None:
        from dse.deploy.onnx_export import build_onnx

        onnx_model = build_onnx(model).SerializeToString()
    session = onnxruntime_session(onnx_model, threads)
    timings = {ONNXRUNTIME: {b: onnxruntime_timing(session, b, repeats, warmup) for b in batch_sizes}}
    if model is not None:
        timings[JAX] = {b: jax_timing(model, b, repeats, warmup) for b in (batch_sizes if jax_batch_sizes is None
                                                                           else jax_batch_sizes)}
    source = model.source if model is not None else onnx_model if isinstance(onnx_model, str | Path) else None
    return LatencyReport(threads, timings, str(source or ""))


def measure_path_latency(path: str | Path, *, threads: int = DEFAULT_THREADS, repeats: int = DEFAULT_REPEATS,
                         warmup: int = DEFAULT_WARMUP, batch_sizes: Sequence[int] = BATCH_SIZES) -> LatencyReport:
    """:func:`measure_latency` of a run folder or ``.dsez`` file (both runtimes) or an ``.onnx`` file (ONNX Runtime only).

    Raises:
        DataError: a path that is none of these, or cannot be read.
        DseError: threads or repeats below 1.
    """
    from dse.deploy.inference_model import load_inference_model
    from dse.errors import DataError, DseError

    path = Path(path)
    if threads < 1 or repeats < 1:
        raise DseError(f"--threads {threads} --repeats {repeats}: both must be >= 1")
    options = {"threads": threads, "repeats": repeats, "warmup": warmup, "batch_sizes": batch_sizes}
    if path.suffix == ".onnx" and not path.is_dir():
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        return measure_latency(onnx_model=path, **options)
    return measure_latency(load_inference_model(path), **options)


def run_latency_metrics(model: InferenceModel, repeats: int = 20) -> dict[str, float]:
    """What a run reports with ``measure_latency``: ONNX Runtime at batch 1 and 64 (one thread), JAX at batch 1."""
    return measure_latency(model, repeats=repeats, batch_sizes=BATCH_SIZES, jax_batch_sizes=(1,)).metrics()
