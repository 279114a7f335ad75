"""An upper bound on a ``.dsez`` file's bytes, known before the network is trained.

Pruning keeps an exact count of weights per kernel (``round(sparsity * size)`` pruned, see
:mod:`dse.compress.prune`), and Huffman coding is optimal among prefix codes, so no stream
is longer than its fixed-width code: ``bits`` per kept weight for the cluster indices, 8 bits
per gap symbol for the positions. Only the trained values decide how much shorter the
real file is (the flagship's: 429,253 bytes against a bound of 891,092, 2.08x). A sweep
constraint on ``compressed_bytes`` uses the bound to skip, before training, a candidate
that could only fit the limit if Huffman coding saved more than a margin.

>>> shapes = {"conv1/kernel": (3, 3, 1, 8), "conv1/bias": (8,)}
>>> upper_bound_bytes(shapes, sparsity=0.5, conv_bits=4, classifier_bits=4, header_bytes=0)
619
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

from dse.compress.coding import FILLER
from dse.compress.config import CompressConfig
from dse.compress.prune import SEP, _prune_count, is_kernel
from dse.compress.quantize import CLASSIFIER_LAYER

PREAMBLE_AND_CRC = 20 + 4  # dse.compress.container: magic, version, reserved, length, header length; CRC-32
GAP_ALPHABET = FILLER + 1  # gap symbols are bytes
# Header JSON the weights do not decide: normalisation, the source run's path, the settings.
# Generous on purpose: a run folder's path is the only unbounded string, and 2 kB holds one.
METADATA_SLACK = 2048
# One tensor entry's numbers ("bytes", "count", "index_bits", ...) at their widest.
ENTRY_JSON = ('{"bits":8,"bytes":99999999999,"count":99999999999,"gap_bits":99999999999,"gap_symbols":99999999999,'
              '"index_bits":99999999999,"kind":"float32","name":"","shape":[]},')


def _max_code_length(symbols: int, alphabet: int) -> int:
    """The longest Huffman code of ``symbols`` coded symbols over ``alphabet`` distinct ones: at most
    ``alphabet - 1`` bits, and a code ``L`` bits deep needs at least Fibonacci(L + 2) symbols coded."""
    fib, longest = (1, 2), 1  # Fibonacci(2), Fibonacci(3): a 1-bit code needs 2 symbols (1 for one symbol)
    while fib[0] + fib[1] <= symbols:
        fib, longest = (fib[1], fib[0] + fib[1]), longest + 1
    return max(1, min(alphabet - 1, longest))


def _stream_bound(symbols: int, alphabet: int, bits: int) -> int:
    """A Huffman-coded stream's bytes at their largest: table (``dse.compress.coding.table_to_bytes``:
    one byte, one uint16 per code length, one byte per used symbol) and its fixed-width code."""
    if symbols == 0:
        return 1  # an empty table
    used = min(alphabet, symbols)
    return 1 + 2 * _max_code_length(symbols, used) + used + math.ceil(symbols * bits / 8)


def _shared_bound(size: int, kept: int, bits: int, pruned_at_most: int) -> int:
    """A weight-shared kernel's record at its largest, with at most ``pruned_at_most`` weights pruned."""
    gap_symbols = 0 if pruned_at_most == 0 else kept + pruned_at_most // FILLER  # one per kept weight, fillers for long runs
    return 4 * 2**bits + _stream_bound(kept, 2**bits, bits) + _stream_bound(gap_symbols, GAP_ALPHABET, 8)


def _kept_counts(sizes: Mapping[str, int], bits: Mapping[str, int], sparsity: float, scope: str) -> dict[str, int]:
    """Kept weights per kernel. A per-layer scope prunes each kernel exactly; a global one fixes only
    the total, so the bound gives the kept weights to the kernels with the most bits first."""
    if scope == "per_layer":
        return {path: size - _prune_count(sparsity, size) for path, size in sizes.items()}
    left = sum(sizes.values()) - _prune_count(sparsity, sum(sizes.values()))
    kept = {}
    for path in sorted(sizes, key=lambda p: -bits[p]):
        kept[path] = min(sizes[path], left)
        left -= kept[path]
    return kept


def upper_bound_bytes(shapes: Mapping[str, tuple[int, ...]], *, sparsity: float, conv_bits: int,
                      classifier_bits: int, header_bytes: int, scope: str = "per_layer") -> int:
    """The most bytes a ``.dsez`` file of a network with these folded parameter ``shapes`` can take.

    Args:
        shapes: flattened parameter path -> shape of the BatchNorm-folded network
            (kernels are weight-shared, everything else is stored as float32).
        sparsity, scope: the pruning (:class:`~dse.compress.config.CompressConfig`).
        conv_bits, classifier_bits: bits per kept weight, conv layers and conv10.
        header_bytes: the header JSON's bytes other than its tensor entries.
    """
    sizes = {path: math.prod(shape) for path, shape in shapes.items()}
    kernels = {path: size for path, size in sizes.items() if is_kernel(path)}
    bits = {path: classifier_bits if path.split(SEP, 1)[0] == CLASSIFIER_LAYER else conv_bits for path in kernels}
    kept = _kept_counts(kernels, bits, sparsity, scope)
    payload = sum(4 * size for path, size in sizes.items() if path not in kernels)
    # Under a global threshold any kernel may have pruned weights, and so a gap stream, whatever it keeps.
    pruned = {path: size - kept[path] if scope == "per_layer" else size for path, size in kernels.items()}
    payload += sum(_shared_bound(kernels[path], kept[path], bits[path], pruned[path]) for path in kernels)
    entries = sum(len(ENTRY_JSON) + len(path) + len(json.dumps(list(shapes[path]))) for path in shapes)
    return PREAMBLE_AND_CRC + header_bytes + entries + payload


def compressed_bytes_bound(train_config, settings: CompressConfig | None = None) -> int:
    """:func:`upper_bound_bytes` of a training config's network compressed with ``settings``
    (default: the config's own ``compress``). Traces the model's shapes; trains nothing."""
    import jax
    import jax.numpy as jnp

    from dse.arch import build_model, expand
    from dse.compress.fold import folded_model_config
    from dse.compress.prune import flat

    settings = settings or train_config.compress
    folded = folded_model_config(train_config.model)
    model = build_model(expand(folded))
    dummy = jnp.zeros((1, *folded.input_shape), jnp.float32)
    variables = jax.eval_shape(lambda: model.init({"params": jax.random.key(0)}, dummy, train=False))
    shapes = {path: tuple(leaf.shape) for path, leaf in flat(variables["params"]).items()}
    header = {"config": {"model": folded.model_dump(mode="json"), "data": train_config.data.model_dump(mode="json")},
              "metadata": {"compress": settings.model_dump(mode="json")}, "tensors": []}
    header_bytes = len(json.dumps(header, separators=(",", ":"), default=str)) + METADATA_SLACK
    return upper_bound_bytes(shapes, sparsity=settings.sparsity, scope=settings.scope, conv_bits=settings.conv_bits,
                             classifier_bits=settings.classifier_bits, header_bytes=header_bytes)
