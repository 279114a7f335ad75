"""Huffman coding of a quantized layer (Deep Compression, step 3), with ``bitarray``.

A layer is two symbol streams, each Huffman coded with its own canonical code:

* **indices**: the codebook index (0..2**bits-1) of every kept weight, in flattened
  (row-major) order.
* **gaps**: where the kept weights are, as relative positions. Symbol ``z`` in
  0..254 means "``z`` pruned weights, then the next kept one"; symbol 255 is a
  *filler*: "255 pruned weights, no kept one yet". This is the paper's scheme (gaps
  capped at a fixed width, filler entries for longer runs) with a byte-wide gap
  alphabet, chosen so every symbol fits a uint8 and long zero runs cost one filler
  per 255 positions. The filler carries no weight, so the index stream holds exactly
  one symbol per kept weight. Zeros after the last kept weight need no symbol (the
  kernel's size is known), and a layer with no pruned weight stores no gaps at all.

A canonical code is fully described by how many symbols have each code length and the
symbols in canonical order, so a table costs ``1 + 2 * max_length + n_symbols`` bytes
(see :func:`table_to_bytes`), not a pickled dict.

>>> import numpy as np
>>> gaps = gap_symbols(np.array([0, 1, 0, 0, 1], bool))
>>> gaps.tolist(), mask_from_gaps(gaps, 5).astype(int).tolist()
([1, 2], [0, 1, 0, 0, 1])
"""

from __future__ import annotations

import dataclasses
import struct

import numpy as np
from bitarray import bitarray
from bitarray.util import canonical_decode, canonical_huffman

FILLER = 255  # gap symbol: 255 pruned positions and no kept weight
_U16 = struct.Struct("<H")


@dataclasses.dataclass(frozen=True)
class HuffmanTable:
    """A canonical Huffman code.

    Attributes:
        counts: number of symbols of each code length 1, 2, ..., max_length.
        symbols: the symbols (0..255) in canonical order.
    """

    counts: tuple[int, ...] = ()
    symbols: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class CodedStream:
    """One Huffman-coded symbol stream: its table, its bits (zero-padded to bytes), and lengths."""

    table: HuffmanTable
    data: bytes
    n_bits: int
    n_symbols: int


def huffman_encode(symbols: np.ndarray) -> CodedStream:
    """Huffman-code a stream of byte-sized symbols with a code built from their own frequencies.

    Args:
        symbols: 1-D integers in 0..255; may be empty. A stream of one distinct symbol
            gets a 1-bit code (bitarray's convention), so its length is still recoverable.

    Returns:
        The :class:`CodedStream`.
    """
    symbols = np.asarray(symbols).ravel()
    if symbols.size == 0:
        return CodedStream(HuffmanTable(), b"", 0, 0)
    values, freqs = np.unique(symbols, return_counts=True)
    code, counts, order = canonical_huffman({int(v): int(f) for v, f in zip(values, freqs, strict=True)})
    bits = bitarray(endian="big")
    bits.encode(code, symbols.tolist())
    # counts[0] is the number of 0-length codes, always 0: not stored.
    return CodedStream(HuffmanTable(tuple(counts[1:]), tuple(order)), bits.tobytes(), len(bits), int(symbols.size))


def huffman_decode(stream: CodedStream) -> np.ndarray:
    """The uint8 symbols of ``stream``.

    Raises:
        ValueError: the bits do not decode to exactly ``n_symbols`` symbols.
    """
    if stream.n_symbols == 0:
        return np.zeros(0, np.uint8)
    bits = bitarray(endian="big")
    bits.frombytes(stream.data)
    if stream.n_bits > len(bits):
        raise ValueError(f"stream has {len(bits)} bits, expected {stream.n_bits}")
    del bits[stream.n_bits:]  # the zero padding of the last byte
    decoded = np.fromiter(canonical_decode(bits, [0, *stream.table.counts], list(stream.table.symbols)), np.uint8)
    if decoded.size != stream.n_symbols:
        raise ValueError(f"stream decodes to {decoded.size} symbols, expected {stream.n_symbols}")
    return decoded


def table_to_bytes(table: HuffmanTable) -> bytes:
    """``max_length`` (uint8), ``counts`` (uint16 LE each), ``symbols`` (uint8 each)."""
    return bytes([len(table.counts)]) + b"".join(_U16.pack(c) for c in table.counts) + bytes(table.symbols)


def table_from_bytes(buf: bytes, offset: int) -> tuple[HuffmanTable, int]:
    """Parse a table at ``offset``; returns it and the offset just past it.

    Raises:
        ValueError: the buffer ends inside the table.
    """
    if offset >= len(buf):
        raise ValueError("ends before a Huffman table")
    n_lengths = buf[offset]
    offset += 1
    end = offset + 2 * n_lengths
    if end > len(buf):
        raise ValueError("ends inside a Huffman table")
    counts = tuple(_U16.unpack_from(buf, offset + 2 * i)[0] for i in range(n_lengths))
    n_symbols = sum(counts)
    if end + n_symbols > len(buf):
        raise ValueError("ends inside a Huffman table")
    return HuffmanTable(counts, tuple(buf[end:end + n_symbols])), end + n_symbols


def gap_symbols(mask: np.ndarray) -> np.ndarray:
    """The gap stream (see the module docstring) of a keep-mask, flattened row-major."""
    positions = np.flatnonzero(np.asarray(mask).ravel())
    zeros_before = np.diff(positions, prepend=-1) - 1  # pruned weights since the previous kept one
    fillers, rest = np.divmod(zeros_before, FILLER)
    per_weight = fillers + 1  # each kept weight: its fillers, then its own symbol
    out = np.full(int(per_weight.sum()), FILLER, np.uint8)
    out[np.cumsum(per_weight) - 1] = rest
    return out


def mask_from_gaps(symbols: np.ndarray, size: int) -> np.ndarray:
    """The flat bool keep-mask of ``size`` positions that :func:`gap_symbols` describes.

    Raises:
        ValueError: the gaps point past ``size``.
    """
    symbols = np.asarray(symbols, np.int64)
    advance = np.where(symbols == FILLER, FILLER, symbols + 1)
    positions = (np.cumsum(advance) - 1)[symbols != FILLER]
    if positions.size and positions[-1] >= size:
        raise ValueError(f"gaps point to position {positions[-1]} of a {size}-weight kernel")
    mask = np.zeros(size, bool)
    mask[positions] = True
    return mask
