"""The ``.dsez`` file: a compressed dse model, self-describing and checksummed.

Byte layout (all integers little-endian)::

    offset   size  field
    0        4     magic b"DSEZ"
    4        2     format version, uint16 (FORMAT_VERSION)
    6        2     reserved, 0
    8        8     total file length in bytes, uint64 (tells truncation from corruption)
    16       4     H: header length in bytes, uint32
    20       H     header: UTF-8 JSON, see below
    20+H     ...   one record per header "tensors" entry, in that order
    end-4    4     CRC-32 (zlib.crc32) of every byte before it, uint32

Header JSON: ``{"config": ..., "metadata": ..., "tensors": [...]}``. ``config`` and
``metadata`` are opaque to this module (dse stores the resolved model/data config and
the normalisation mean/std there). Each tensor entry has ``name`` (the flattened
params path), ``shape``, ``kind`` and ``bytes`` (its record's length), and

* ``kind: "float32"`` (biases): the record is the raw float32 values, row-major.
* ``kind: "shared"`` (a weight-shared kernel) adds ``bits``, ``count`` (kept weights),
  ``index_bits``, ``gap_symbols``, ``gap_bits``. Its record is::

      codebook       float32[2**bits]
      index table    Huffman table (dse.compress.coding.table_to_bytes)
      index stream   ceil(index_bits / 8) bytes, ``count`` symbols
      gap table      Huffman table
      gap stream     ceil(gap_bits / 8) bytes, ``gap_symbols`` symbols (none when count == size)

:func:`write` is atomic (temporary file + ``os.replace``); :func:`read` raises a one-line
:class:`~dse.errors.DataError` naming the file for any malformed input.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from dse.compress.coding import (
    CodedStream,
    gap_symbols,
    huffman_decode,
    huffman_encode,
    mask_from_gaps,
    table_from_bytes,
    table_to_bytes,
)
from dse.compress.quantize import QuantizedParams, dequantize
from dse.errors import DataError

MAGIC = b"DSEZ"
FORMAT_VERSION = 1
SUFFIX = ".dsez"
_PREAMBLE = struct.Struct("<4sHHQI")  # magic, version, reserved, total length, header length
_CRC = struct.Struct("<I")
_F32 = np.dtype("<f4")


def _shared_record(codebook: np.ndarray, indices: np.ndarray, mask: np.ndarray) -> tuple[dict, bytes]:
    bits = len(codebook).bit_length() - 1
    if len(codebook) != 2**bits or not 1 <= bits <= 8:
        raise ValueError(f"codebook of {len(codebook)} entries: must be 2**bits with bits in 1..8 (uint8 indices)")
    mask = np.asarray(mask, bool)
    index_stream = huffman_encode(np.asarray(indices)[mask])
    # A layer with nothing pruned needs no positions: every weight is kept.
    gap_stream = huffman_encode(gap_symbols(mask) if not mask.all() else np.zeros(0, np.uint8))
    record = b"".join([
        np.asarray(codebook, _F32).tobytes(),
        table_to_bytes(index_stream.table), index_stream.data,
        table_to_bytes(gap_stream.table), gap_stream.data,
    ])
    entry = {"kind": "shared", "bits": bits, "count": index_stream.n_symbols,
             "index_bits": index_stream.n_bits, "gap_symbols": gap_stream.n_symbols, "gap_bits": gap_stream.n_bits}
    return entry, record


def encode(q: QuantizedParams, *, config: dict, metadata: dict | None = None) -> bytes:
    """The ``.dsez`` bytes of a quantized model (see the module docstring).

    Args:
        q: the model; codebook sizes must be powers of two up to 256.
        config: JSON-serialisable description of the network (opaque here).
        metadata: further JSON-serialisable facts (opaque here), e.g. normalisation.

    Returns:
        The whole file's bytes.
    """
    entries, records = [], []
    for name in sorted([*q.codebooks, *q.floats]):
        if name in q.codebooks:
            entry, record = _shared_record(np.asarray(q.codebooks[name]), q.indices[name], q.masks[name])
            shape = np.shape(q.indices[name])
        else:
            record = np.asarray(q.floats[name], _F32).tobytes()
            entry, shape = {"kind": "float32"}, np.shape(q.floats[name])
        entries.append({"name": name, "shape": list(shape), **entry, "bytes": len(record)})
        records.append(record)
    header = json.dumps({"config": config, "metadata": metadata or {}, "tensors": entries},
                        sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    payload = b"".join(records)
    total = _PREAMBLE.size + len(header) + len(payload) + _CRC.size
    body = _PREAMBLE.pack(MAGIC, FORMAT_VERSION, 0, total, len(header)) + header + payload
    return body + _CRC.pack(zlib.crc32(body))


def write(path: str | Path, q: QuantizedParams, *, config: dict, metadata: dict | None = None) -> int:
    """Write ``q`` to ``path`` atomically: an existing file is replaced only by a complete new one.

    Args:
        path: the file to write (conventionally ``*.dsez``).
        q, config, metadata: as for :func:`encode`.

    Returns:
        The file's size in bytes (``os.path.getsize(path)``).
    """
    path = Path(path)
    data = encode(q, config=config, metadata=metadata)
    write_atomic(path, data)
    return len(data)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``.

    A crash or error leaves the old file (if any) whole. The temporary file is opened
    with ``open`` rather than ``mkstemp`` so it gets the umask's permissions, not 0600.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _check_envelope(path: Path, data: bytes) -> bytes:
    """The header bytes, after checking magic, version, length and checksum."""
    if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
        raise DataError(f"{path}: not a .dsez file (bad magic number)")
    if len(data) < _PREAMBLE.size + _CRC.size:
        raise DataError(f"{path}: truncated ({len(data)} bytes, shorter than the fixed preamble)")
    _, version, _, total, header_len = _PREAMBLE.unpack_from(data)
    if version != FORMAT_VERSION:
        raise DataError(f"{path}: .dsez format version {version}; this dse reads version {FORMAT_VERSION}")
    if len(data) < total:
        raise DataError(f"{path}: truncated ({len(data)} of {total} bytes)")
    if len(data) > total:
        raise DataError(f"{path}: {len(data) - total} unexpected bytes after the end of the file")
    if zlib.crc32(data[:-_CRC.size]) != _CRC.unpack_from(data, len(data) - _CRC.size)[0]:
        raise DataError(f"{path}: checksum mismatch (the file is corrupted)")
    if _PREAMBLE.size + header_len > total - _CRC.size:
        raise DataError(f"{path}: header length {header_len} runs past the end of the file")
    return data[_PREAMBLE.size:_PREAMBLE.size + header_len]


def _stream(buf: bytes, offset: int, n_bits: int, n_symbols: int) -> tuple[np.ndarray, int]:
    table, offset = table_from_bytes(buf, offset)
    end = offset + math.ceil(n_bits / 8)
    if end > len(buf):
        raise ValueError("ends inside a coded stream")
    return huffman_decode(CodedStream(table, buf[offset:end], n_bits, n_symbols)), end


def _decode_shared(entry: dict, record: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    shape = tuple(entry["shape"])
    size = math.prod(shape)
    k = 2 ** entry["bits"]
    if len(record) < 4 * k:
        raise ValueError("ends inside the codebook")
    codebook = np.frombuffer(record, _F32, k).astype(np.float32)
    kept, offset = _stream(record, 4 * k, entry["index_bits"], entry["count"])
    gaps, offset = _stream(record, offset, entry["gap_bits"], entry["gap_symbols"])
    if offset != len(record):
        raise ValueError(f"record is {len(record)} bytes but its parts take {offset}")
    mask = np.ones(size, bool) if entry["count"] == size else mask_from_gaps(gaps, size)
    if int(mask.sum()) != entry["count"]:
        raise ValueError(f"gaps mark {int(mask.sum())} kept weights, expected {entry['count']}")
    if kept.size and int(kept.max()) >= k:
        raise ValueError(f"index {int(kept.max())} outside a {k}-entry codebook")
    indices = np.zeros(size, np.uint8)
    indices[mask] = kept
    return codebook, indices.reshape(shape), mask.reshape(shape)


def decode(data: bytes, path: str | Path = "<bytes>") -> tuple[QuantizedParams, dict]:
    """Parse ``.dsez`` bytes; ``path`` only names the source in error messages.

    Returns:
        (the :class:`QuantizedParams`, the header dict with ``config``, ``metadata``, ``tensors``).

    Raises:
        DataError: wrong magic or version, truncated, checksum mismatch, or inconsistent records.
    """
    path = Path(path)
    header_bytes = _check_envelope(path, data)
    try:
        header = json.loads(header_bytes)
        tensors = header["tensors"]
    except (ValueError, KeyError, TypeError) as err:
        raise DataError(f"{path}: damaged header ({err})") from None
    q = QuantizedParams({}, {}, {}, {})
    offset = _PREAMBLE.size + len(header_bytes)
    end = len(data) - _CRC.size
    for entry in tensors:
        name = entry.get("name", "?")
        try:
            record = data[offset:offset + entry["bytes"]]
            if offset + entry["bytes"] > end:
                raise ValueError("record runs past the end of the file")
            offset += entry["bytes"]
            if entry["kind"] == "float32":
                q.floats[name] = np.frombuffer(record, _F32).astype(np.float32).reshape(entry["shape"])
            elif entry["kind"] == "shared":
                q.codebooks[name], q.indices[name], q.masks[name] = _decode_shared(entry, record)
            else:
                raise ValueError(f"unknown kind {entry['kind']!r}")
        except (ValueError, KeyError, TypeError) as err:
            raise DataError(f"{path}: tensor {name}: {err}") from None
    if offset != end:
        raise DataError(f"{path}: {end - offset} bytes after the last tensor")
    return q, header


def read_quantized(path: str | Path) -> tuple[QuantizedParams, dict]:
    """Read a ``.dsez`` file as codebooks, indices and masks; see :func:`decode`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err.strerror or err}") from None
    return decode(data, path)


def read(path: str | Path) -> tuple[dict[str, Any], dict]:
    """Read a ``.dsez`` file back into weights.

    Args:
        path: the file.

    Returns:
        (params: nested dict of float32 numpy arrays, ready for ``model.apply``;
        header: ``config``, ``metadata`` and the per-tensor ``tensors`` entries).

    Raises:
        DataError: unreadable or malformed file, with a one-line message naming it.
    """
    q, header = read_quantized(path)
    return dequantize(q), header
