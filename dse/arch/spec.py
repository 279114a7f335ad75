"""Metaparameters -> SqueezeNet architecture spec: one pure function, no JAX.

The paper (Iandola et al. 2016, section 5) indexes Fire modules ``i = 0..7``
(fire2 .. fire9) and sets, for module ``i``::

    e_i      = base_e + incr_e * floor(i / freq)        expand filters
    e_i,3x3  = e_i * pct3x3,  e_i,1x1 = e_i - e_i,3x3    (3x3 and 1x1 expand)
    s_i,1x1  = SR * e_i                                  squeeze filters

Rounding rule (the one place widths become integers): a non-integer product is
rounded to the nearest integer, halves up (``floor(x + 0.5)``). ``e_i,3x3`` is rounded
and ``e_i,1x1`` takes the rest, so the two always sum to ``e_i``. A width that
rounds to zero is invalid input, except that ``pct3x3`` of exactly 0 or 1 asks for
a module without the 3x3 (or 1x1) expand branch.

>>> spec = expand(ArchConfig())           # SqueezeNet v1.0, Table 1
>>> [(f.squeeze, f.expand1x1, f.expand3x3) for f in spec.fires][:3]
[(16, 64, 64), (16, 64, 64), (32, 128, 128)]
>>> spec.fires[-1].name, spec.fires[-1].squeeze
('fire9', 64)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from dse.errors import SpecError

NUM_FIRES = 8
Stem = Literal["v1.0", "v1.1", "small"]
Bypass = Literal["none", "simple", "complex"]
Init = Literal["caffe", "torchvision"]


@dataclass(frozen=True)
class StemPreset:
    """The first conv and the default max-pool positions of a macroarchitecture."""

    filters: int
    kernel: int
    stride: int
    padding: int
    pool_after: tuple[int, ...]  # fire indices followed by a 3x3/2 max pool


# Caffe release and torchvision: v1.0 pools after conv1, fire4, fire8; v1.1 after
# conv1, fire3, fire5. The small-image stem (28-32 px inputs) keeps v1.1's layout
# but with a stride-1, same-padded 3x3 conv so the input is not shrunk twice.
STEMS: dict[str, StemPreset] = {
    "v1.0": StemPreset(filters=96, kernel=7, stride=2, padding=0, pool_after=(2, 6)),
    "v1.1": StemPreset(filters=64, kernel=3, stride=2, padding=0, pool_after=(1, 3)),
    "small": StemPreset(filters=64, kernel=3, stride=1, padding=1, pool_after=(1, 3)),
}

# Named architectures are data: metaparameter sets over the ArchConfig defaults.
PRESETS: dict[str, dict[str, Any]] = {
    "squeezenet1_0": {"stem": "v1.0"},
    "squeezenet1_1": {"stem": "v1.1"},
    "squeezenet_small": {"stem": "small", "num_classes": 10, "input_shape": (28, 28, 1)},
}

# Simple bypass wraps the modules whose input and output widths match in the
# paper's network (fire3, 5, 7, 9); complex bypass adds a 1x1 conv around the rest.
SIMPLE_BYPASS_FIRES = (1, 3, 5, 7)


@dataclass(frozen=True)
class Bound:
    """The domain of one metaparameter, with the rule as users read it."""

    rule: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself is outside

    def contains(self, value: float) -> bool:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        return above and (self.high is None or value <= self.high)


# Every bound of a metaparameter, in one place: the schema checks them when a config is
# built, the generator again (configs made with model_copy skip validation), and a sweep
# file's ranges are checked against them at load.
BOUNDS: dict[str, Bound] = {
    "base_e": Bound("must be a positive integer", low=1),
    "incr_e": Bound("must be >= 0", low=0),
    "freq": Bound("must be a positive integer", low=1),
    "sr": Bound("squeeze ratio must be in (0, 1]", low=0, high=1, low_open=True),
    "pct3x3": Bound("must be in [0, 1]", low=0, high=1),
    "stem_filters": Bound("must be >= 1", low=1),
    "num_classes": Bound("must be >= 1", low=1),
}


def bound_violation(name: str, value: Any) -> str | None:
    """``"sr=1.5: squeeze ratio must be in (0, 1]"``, or None inside the bound (or for None)."""
    if value is None or BOUNDS[name].contains(value):
        return None
    return f"{name}={value}: {BOUNDS[name].rule}"


class ArchConfig(BaseModel):
    """Micro- and macroarchitecture of one SqueezeNet candidate.

    Defaults are SqueezeNet v1.0 on ImageNet. ``preset`` fills in a named set first;
    fields given beside it override the preset.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_e: int = 128
    incr_e: int = 128
    freq: int = 2
    pct3x3: float = 0.5
    sr: float = 0.125
    stem: Stem = "v1.0"
    stem_filters: int | None = Field(None, description="override the stem's conv1 width")
    pool_after: tuple[int, ...] | None = Field(None, description="fire indices (0-7) followed by a max pool; default: the stem's")
    bypass: Bypass = "none"
    batch_norm: bool = Field(False, description="not in the paper: BatchNorm after every conv but conv10")
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    head_relu: bool = Field(True, description="the paper's ReLU after conv10; with few classes a class whose "
                            "logit dies at 0 never recovers, so small-image runs may turn it off")
    init: Init = "caffe"
    num_classes: int = 1000
    input_shape: tuple[int, int, int] = (227, 227, 3)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and "preset" in data:
            data = dict(data)
            name = data.pop("preset")
            if name not in PRESETS:
                raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
            data = {**PRESETS[name], **data}
        return data

    @field_validator(*BOUNDS)
    @classmethod
    def _within_bounds(cls, value: Any, info: ValidationInfo) -> Any:
        problem = bound_violation(info.field_name, value)
        if problem:
            raise ValueError(problem)
        return value

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> ArchConfig:
        return cls(preset=name, **overrides)


@dataclass(frozen=True)
class ConvSpec:
    name: str
    in_channels: int
    filters: int
    kernel: int
    stride: int = 1
    padding: int = 0


@dataclass(frozen=True)
class FireSpec:
    name: str  # fire2 .. fire9, the paper's names
    index: int  # 0 .. 7, the metaparameter index
    in_channels: int
    squeeze: int
    expand1x1: int
    expand3x3: int
    bypass: Literal["none", "identity", "conv"]
    pool_after: bool

    @property
    def out_channels(self) -> int:
        return self.expand1x1 + self.expand3x3


@dataclass(frozen=True)
class NetSpec:
    """Everything the Flax model and the analytics need, in integers."""

    config: ArchConfig
    conv1: ConvSpec
    fires: tuple[FireSpec, ...]
    conv10: ConvSpec

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.config.input_shape


def round_width(x: float) -> int:
    """The documented rounding rule: nearest integer, halves up."""
    return math.floor(x + 0.5)


def expand_widths(i: int, cfg: ArchConfig) -> tuple[int, int, int]:
    """(squeeze, expand1x1, expand3x3) of fire module ``i`` from the metaparameters."""
    e = cfg.base_e + cfg.incr_e * (i // cfg.freq)
    e3 = round_width(e * cfg.pct3x3)
    e1 = e - e3
    s = round_width(cfg.sr * e)
    name = f"fire{i + 2}"
    if s < 1:
        raise SpecError(f"sr={cfg.sr}: {name} squeeze width sr*e = {cfg.sr}*{e} rounds to 0 (must be >= 1)")
    if 0 < cfg.pct3x3 < 1 and min(e1, e3) < 1:
        branch = "3x3" if e3 < 1 else "1x1"
        raise SpecError(f"pct3x3={cfg.pct3x3}: {name} {branch} expand width rounds to 0 (e={e}); use 0 or 1 to drop a branch")
    return s, e1, e3


def validate(cfg: ArchConfig) -> None:
    """Reject metaparameters outside the paper's domain, naming the rule."""
    for name in BOUNDS:
        problem = bound_violation(name, getattr(cfg, name))
        if problem:
            raise SpecError(problem)
    if min(cfg.input_shape) < 1:
        raise SpecError(f"input_shape={list(cfg.input_shape)}: every dimension must be >= 1")
    bad_pools = [p for p in cfg.pool_after or () if not 0 <= p < NUM_FIRES]
    if bad_pools or len(set(cfg.pool_after or ())) != len(cfg.pool_after or ()):
        raise SpecError(f"pool_after={list(cfg.pool_after)}: fire indices must be distinct and in 0..7")


def _bypass_kind(cfg: ArchConfig, i: int, cin: int, cout: int) -> Literal["none", "identity", "conv"]:
    if cfg.bypass == "none":
        return "none"
    if cfg.bypass == "simple":
        if i not in SIMPLE_BYPASS_FIRES:
            return "none"
        if cin != cout:
            raise SpecError(
                f"bypass=simple: fire{i + 2} input width {cin} != output width {cout}, so an identity "
                "bypass cannot apply (use bypass=complex, or freq/incr_e that keep its widths equal)"
            )
        return "identity"
    return "identity" if cin == cout else "conv"


def expand(cfg: ArchConfig) -> NetSpec:
    """Build the layer spec of one candidate; raises :class:`SpecError` on invalid input."""
    validate(cfg)
    stem = STEMS[cfg.stem]
    pool_after = set(stem.pool_after if cfg.pool_after is None else cfg.pool_after)
    channels = cfg.input_shape[2]
    conv1 = ConvSpec("conv1", channels, cfg.stem_filters or stem.filters, stem.kernel, stem.stride, stem.padding)
    fires = []
    cin = conv1.filters
    for i in range(NUM_FIRES):
        s, e1, e3 = expand_widths(i, cfg)
        fires.append(FireSpec(f"fire{i + 2}", i, cin, s, e1, e3, _bypass_kind(cfg, i, cin, e1 + e3), i in pool_after))
        cin = e1 + e3
    conv10 = ConvSpec("conv10", cin, cfg.num_classes, 1)
    spec = NetSpec(cfg, conv1, tuple(fires), conv10)
    _check_spatial(spec)
    return spec


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def pool_out(size: int) -> int:
    """3x3/2 max pool with Caffe's ceil rounding (torchvision ``ceil_mode=True``)."""
    return math.ceil((size - 3) / 2) + 1


def _check_spatial(spec: NetSpec) -> None:
    h, w, _ = spec.input_shape
    c1 = spec.conv1
    steps = [("conv1", lambda s: conv_out(s, c1.kernel, c1.stride, c1.padding)), ("maxpool1", pool_out)]
    steps += [(f"maxpool{f.index + 2}", pool_out) for f in spec.fires if f.pool_after]
    for name, shrink in steps:
        if min(h, w) < (c1.kernel if name == "conv1" else 3) - (2 * c1.padding if name == "conv1" else 0):
            raise SpecError(
                f"input_shape={list(spec.input_shape)}: too small for the pooling chain ({name} gets {h}x{w}); "
                "use a larger input, the 'small' stem, or fewer pool_after positions"
            )
        h, w = shrink(h), shrink(w)
