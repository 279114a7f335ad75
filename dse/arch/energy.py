"""Estimated energy per inference, from a spec's MACs and memory traffic (no JAX).

An estimate, not a measurement: every figure it produces is labelled "estimated" /
"(est.)". It uses the 45 nm energy table that Deep Compression (Han et al., ICLR 2016,
Table 1 / Figure 2) takes from Horowitz, "Computing's energy problem", ISSCC 2014:

    =========================  =========
    operation (32-bit)         energy
    =========================  =========
    float multiply             3.7 pJ
    float add                  0.9 pJ
    SRAM read (8 KB array)     5 pJ
    DRAM read                  640 pJ
    =========================  =========

The model:

* compute: every multiply-accumulate is one float32 multiply and one add, 4.6 pJ
  (the MACs of :func:`dse.arch.analytics.summarize`; pools, ReLUs and bypass additions
  are left out, as they are a few percent of the MACs);
* weights: each 32-bit word of the stored model is read once per inference, from SRAM
  when the model fits the on-chip budget (``sram_bytes``), else from DRAM. The model's
  bytes are the compressed file's when known (a ``.dsez``), else float32 (4 bytes per
  parameter). Decoding a compressed file costs nothing here, and the arithmetic stays
  dense: pruned weights are still multiplied (no sparse accelerator is assumed);
* activations: always in SRAM, one 32-bit word per float32 element, a write costing
  what a read costs. Each layer of the layer table reads its input map once and writes
  its output map once (perfect on-chip reuse inside a layer, a lower bound); inside a
  Fire module the squeeze map is written once and read by each expand branch, and a
  bypass reads the module's input once more. A baseline family's table has a row per
  graph node, which reads every map it takes (an ``Add`` both of its inputs): channel
  splits, concatenations and shuffles are counted as copies, as a runtime without
  in-place views makes them.

The SRAM figure is for a small (8 KB) array; a larger one costs more per access, so
the on-chip terms are optimistic, as they are in Deep Compression's argument.

>>> from dse.arch.spec import ArchConfig, expand
>>> from dse.arch.analytics import summarize
>>> estimate = estimate_energy(summarize(expand(ArchConfig.preset("squeezenet1_0"))))
>>> estimate.weights_on_chip, round(estimate.total_uj)    # 4.8 MB of float32 weights: off-chip
(False, 4682)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dse.arch.analytics import Summary

WORD_BYTES = 4  # the table's 32-bit word
PJ_PER_UJ = 1e6
# The SqueezeNet paper's target: a model under 0.5 MB "can fit entirely in on-chip SRAM"
# (Iandola et al. 2016, section 1, after Deep Compression). 512 KiB is that target, and the
# size of the on-chip buffers of edge accelerators of the time (Eyeriss: a 108 KB global
# buffer plus per-PE scratchpads), so a candidate is on-chip exactly when it meets the paper's goal.
DEFAULT_SRAM_BYTES = 512 * 1024


@dataclass(frozen=True)
class EnergyTable:
    """Energy per operation in picojoules (32-bit operands)."""

    multiply_pj: float = 3.7
    add_pj: float = 0.9
    sram_read_pj: float = 5.0
    dram_read_pj: float = 640.0

    @property
    def mac_pj(self) -> float:
        return self.multiply_pj + self.add_pj


HOROWITZ_45NM = EnergyTable()


@dataclass(frozen=True)
class EnergyEstimate:
    """Estimated energy of one inference (batch 1), split by where it goes; totals in microjoules."""

    compute_uj: float
    weights_uj: float
    activations_uj: float
    weights_on_chip: bool  # the model's bytes fit the SRAM budget
    weight_bytes: int  # the model's bytes this estimate assumed
    sram_bytes: int  # the SRAM budget

    @property
    def total_uj(self) -> float:
        return self.compute_uj + self.weights_uj + self.activations_uj

    def to_dict(self) -> dict:
        return {**asdict(self), "total_uj": self.total_uj}

    def describe(self) -> str:
        """One line for tables: total and where the weights live."""
        where = "SRAM" if self.weights_on_chip else "DRAM"
        return (f"estimated energy {self.total_uj:,.1f} µJ per inference (45 nm; weights {self.weight_bytes / 2**20:.2f} MB "
                f"in {where}, budget {self.sram_bytes / 2**20:.2f} MB)")


def activation_words(summary: Summary) -> int:
    """32-bit SRAM accesses for activations in one inference (see the module docstring)."""
    accesses, previous = 0, math.prod(summary.input_shape)
    for layer in summary.layers:
        reads = previous if layer.reads is None else layer.reads  # a graph's row names what it reads
        accesses += reads + layer.activations  # read the input map(s), write the output map
        if layer.squeeze is not None:  # a Fire module
            h, w, _ = layer.output_shape
            branches = bool(layer.expand1x1) + bool(layer.expand3x3)
            accesses += h * w * layer.squeeze * (1 + branches)  # squeeze map: one write, one read per branch
            accesses += previous if layer.bypass else 0  # the bypass reads the module's input again
        previous = layer.activations
    return accesses


def estimate_energy(summary: Summary, weight_bytes: int | None = None, sram_bytes: int = DEFAULT_SRAM_BYTES,
                    table: EnergyTable = HOROWITZ_45NM) -> EnergyEstimate:
    """Estimated energy of one inference of the network ``summary`` describes.

    Args:
        summary: the layer table (:func:`dse.arch.analytics.summarize`).
        weight_bytes: the stored model's size (a compressed file's); default float32, 4 bytes per parameter.
        sram_bytes: on-chip SRAM available for weights.
        table: energy per operation.

    Returns:
        An :class:`EnergyEstimate`.
    """
    weight_bytes = summary.size_bytes(32) if weight_bytes is None else int(weight_bytes)
    on_chip = weight_bytes <= sram_bytes
    weight_reads = math.ceil(weight_bytes / WORD_BYTES) * (table.sram_read_pj if on_chip else table.dram_read_pj)
    activation_reads = activation_words(summary) * table.sram_read_pj
    return EnergyEstimate(summary.macs * table.mac_pj / PJ_PER_UJ, weight_reads / PJ_PER_UJ, activation_reads / PJ_PER_UJ,
                          on_chip, weight_bytes, sram_bytes)
