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

Depth (``num_fires``, the paper's 8 by default, 2..16) continues the same formula over
modules ``i = 0..num_fires-1``, named fire2 .. fire{num_fires+1}; the classifier keeps
the name conv10 at every depth.

Downsampling (``downsample_at``) lists one fraction of depth per 3x3/2 max pool: a pool
at fraction ``f`` sits after module ``k = round(f * num_fires)`` (the same rounding rule,
halves up), where ``k = 0`` is right after the stem (conv1) and ``k = num_fires`` after the
last Fire module. The list's length is the number of pools (0 or more, in any order);
two fractions that land on the same ``k`` are rejected. Left unset, it is the stem's own
layout as fractions of 8 (v1.0: 0, 3/8, 7/8; v1.1 and small: 0, 2/8, 4/8), which lands
exactly on the published positions at depth 8 and scales with ``num_fires``; where two
default pools land on one module (only v1.1/small at depth 2) they are one pool.

Other families (``family``: MobileNet v1/v2, ShuffleNet v2, the CIFAR ResNet, AlexNet) share
this schema and ``expand``, which hands them to :mod:`dse.arch.families`.

>>> spec = expand(ArchConfig())           # SqueezeNet v1.0, Table 1
>>> [(f.squeeze, f.expand1x1, f.expand3x3) for f in spec.fires][:3]
[(16, 64, 64), (16, 64, 64), (32, 128, 128)]
>>> spec.fires[-1].name, spec.fires[-1].squeeze
('fire9', 64)
>>> [pool_name(k) for k in spec.pool_positions]   # after conv1, fire4, fire8
['maxpool1', 'maxpool4', 'maxpool8']
>>> deep = expand(ArchConfig(num_fires=12))
>>> deep.fires[-1].name, [pool_name(k) for k in deep.pool_positions]   # 4.5 and 10.5 round up
('fire13', ['maxpool1', 'maxpool6', 'maxpool12'])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_serializer, model_validator

from dse.errors import SpecError

if TYPE_CHECKING:
    from dse.arch.families import GraphSpec

Family = Literal["squeezenet", "mobilenet_v1", "mobilenet_v2", "shufflenet_v2", "resnet", "alexnet"]
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
    downsample_at: tuple[float, ...]  # default max-pool positions, as fractions of depth


# Caffe release and torchvision: v1.0 pools after conv1, fire4, fire8 (0, 3/8, 7/8 of
# the depth); v1.1 after conv1, fire3, fire5 (0, 2/8, 4/8). The small-image stem (28-32
# px inputs) keeps v1.1's layout but with a stride-1, same-padded 3x3 conv so the input
# is not shrunk twice.
STEMS: dict[str, StemPreset] = {
    "v1.0": StemPreset(filters=96, kernel=7, stride=2, padding=0, downsample_at=(0.0, 3 / 8, 7 / 8)),
    "v1.1": StemPreset(filters=64, kernel=3, stride=2, padding=0, downsample_at=(0.0, 2 / 8, 4 / 8)),
    "small": StemPreset(filters=64, kernel=3, stride=1, padding=1, downsample_at=(0.0, 2 / 8, 4 / 8)),
}

# Named architectures are data: metaparameter sets over the ArchConfig defaults.
PRESETS: dict[str, dict[str, Any]] = {
    "squeezenet1_0": {"stem": "v1.0"},
    "squeezenet1_1": {"stem": "v1.1"},
    "squeezenet_small": {"stem": "small", "num_classes": 10, "input_shape": (28, 28, 1)},
    # The baselines at the settings their published parameter counts are for (dse.arch.families).
    "mobilenet_v1": {"family": "mobilenet_v1", "input_shape": (224, 224, 3)},
    "mobilenet_v2": {"family": "mobilenet_v2", "input_shape": (224, 224, 3)},
    "shufflenet_v2": {"family": "shufflenet_v2", "input_shape": (224, 224, 3)},
    "alexnet": {"family": "alexnet", "input_shape": (224, 224, 3)},
    "resnet20": {"family": "resnet", "depth": 20, "num_classes": 10, "input_shape": (32, 32, 3)},
    "resnet32": {"family": "resnet", "depth": 32, "num_classes": 10, "input_shape": (32, 32, 3)},
    "resnet56": {"family": "resnet", "depth": 56, "num_classes": 10, "input_shape": (32, 32, 3)},
}

# Which fields describe which family. The shared ones (family, stem, batch_norm, dropout,
# init, num_classes, input_shape) describe every network; a field of one family given with
# another is refused, and a config's dump holds only its family's fields, so a SqueezeNet
# config dumps exactly as it did before other families existed (same run digests).
SQUEEZENET_FIELDS = frozenset({"base_e", "incr_e", "freq", "pct3x3", "sr", "num_fires", "stem_filters", "downsample_at",
                               "pool_after", "bypass", "head_relu"})
BASELINE_FIELDS: dict[str, frozenset[str]] = {
    "mobilenet_v1": frozenset({"width_multiplier"}),
    "mobilenet_v2": frozenset({"width_multiplier"}),
    "shufflenet_v2": frozenset({"width_multiplier"}),
    "alexnet": frozenset({"width_multiplier"}),
    "resnet": frozenset({"width_multiplier", "depth"}),
}
# A baseline's own BatchNorm, dropout and initialiser unless the config says otherwise: BatchNorm
# where the reference network has it (AlexNet has none); dropout before the classifier as in the
# reference (Keras MobileNet v1 1e-3, torchvision MobileNet v2 0.2 and AlexNet 0.5 before fc6 and
# fc7; ShuffleNet v2 and the CIFAR ResNet none); He initialisation (He et al. 2015) for all, as the
# CIFAR ResNet and torchvision's MobileNet v2 use (torchvision's AlexNet and ShuffleNet v2 keep
# PyTorch's default, a sixth of its variance; init: caffe is the nearer, a half).
FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "mobilenet_v1": {"batch_norm": True, "dropout": 0.001, "init": "torchvision"},
    "mobilenet_v2": {"batch_norm": True, "dropout": 0.2, "init": "torchvision"},
    "shufflenet_v2": {"batch_norm": True, "dropout": 0.0, "init": "torchvision"},
    "resnet": {"batch_norm": True, "dropout": 0.0, "init": "torchvision"},
    "alexnet": {"batch_norm": False, "dropout": 0.5, "init": "torchvision"},
}
BASELINE_ONLY_FIELDS = frozenset().union(*BASELINE_FIELDS.values())
SHUFFLENET_V2_WIDTHS = (0.5, 1.0, 1.5, 2.0)  # the multipliers with published stage widths (Ma et al. 2018, Table 5)

# Simple bypass wraps the modules whose input and output widths match in the paper's
# width schedule (freq = 2): every second module, i = 1, 3, 5, ... (fire3, 5, 7, 9 at
# depth 8), at any depth. Complex bypass adds a 1x1 conv around the rest.
SIMPLE_BYPASS_EVERY = 2


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
    "num_fires": Bound("must be an integer in 2..16", low=2, high=16),
    "sr": Bound("squeeze ratio must be in (0, 1]", low=0, high=1, low_open=True),
    "pct3x3": Bound("must be in [0, 1]", low=0, high=1),
    "stem_filters": Bound("must be >= 1", low=1),
    "num_classes": Bound("must be >= 1", low=1),
}
# The baselines' one continuous metaparameter (their other rules: width_problem, depth_problem).
WIDTH_MULTIPLIER_BOUND = Bound("must be > 0", low=0, low_open=True)


def bound_violation(name: str, value: Any) -> str | None:
    """``"sr=1.5: squeeze ratio must be in (0, 1]"``, or None inside the bound (or for None)."""
    if value is None or BOUNDS[name].contains(value):
        return None
    return f"{name}={value}: {BOUNDS[name].rule}"


def downsample_problem(fractions: tuple[float, ...], num_fires: int) -> str | None:
    """Why ``downsample_at`` cannot place its pools at this depth (one line), or None.

    >>> downsample_problem((0.5, 0.6), 4)
    'downsample_at=[0.5, 0.6]: 0.5 and 0.6 both put a pool after fire3 (round(f * num_fires=4) = 2); give distinct positions'
    """
    shown = f"downsample_at={list(fractions)}"
    outside = [f for f in fractions if not 0 <= f <= 1]
    if outside:
        return f"{shown}: {outside[0]} is outside [0, 1] (0 = after the stem, 1 = after the last Fire module)"
    seen: dict[int, float] = {}
    for f in fractions:
        k = round_width(f * num_fires)
        if k in seen:
            return (f"{shown}: {seen[k]} and {f} both put a pool after {pooled_layer(k)} "
                    f"(round(f * num_fires={num_fires}) = {k}); give distinct positions")
        seen[k] = f
    return None


def retired_pool_after(value: Any, num_fires: int) -> str | None:
    """``pool_after`` is retired: null still loads (configs saved before ``downsample_at``); a list
    is refused with its ``downsample_at`` equivalent (the old maxpool1 after the stem, then each fire)."""
    if value is None:
        return None
    try:
        fractions = [0] + [round((int(p) + 1) / num_fires, 4) for p in value]
        hint = f": pool_after={list(value)} is downsample_at={fractions}"
    except (TypeError, ValueError):
        hint = ""
    return f"pool_after was replaced by downsample_at (fractions of depth, 0 = after the stem){hint}"


def family_fields(family: str) -> frozenset[str]:
    """The family-specific fields ``family`` takes (the shared ones aside)."""
    return SQUEEZENET_FIELDS if family == "squeezenet" else BASELINE_FIELDS[family]


def misplaced_field(name: str, family: str) -> str | None:
    """Why the field ``name`` cannot be given with ``family`` (one line), or None if it can."""
    if name in family_fields(family):
        return None
    owners = ["squeezenet"] if name in SQUEEZENET_FIELDS else [f for f, names in BASELINE_FIELDS.items() if name in names]
    own = sorted(family_fields(family) - {"pool_after"})
    return f"{name} applies to {', '.join(owners)}, not family={family} (whose own fields are {', '.join(own)})"


def depth_problem(depth: int) -> str | None:
    """Why ``depth`` is not a CIFAR ResNet depth 6n + 2 (He et al. 2016, section 4.2), or None."""
    if depth >= 8 and (depth - 2) % 6 == 0:
        return None
    return f"depth={depth}: a CIFAR ResNet has 6n + 2 layers (n >= 1 blocks per stage): 8, 14, 20, 32, 44, 56, 110, ..."


def width_problem(family: str, width_multiplier: float) -> str | None:
    """Why ``width_multiplier`` does not fit ``family`` (one line), or None."""
    problem = None if WIDTH_MULTIPLIER_BOUND.contains(width_multiplier) else (
        f"width_multiplier={width_multiplier}: {WIDTH_MULTIPLIER_BOUND.rule}")
    if problem is None and family == "shufflenet_v2" and width_multiplier not in SHUFFLENET_V2_WIDTHS:
        problem = (f"width_multiplier={width_multiplier}: shufflenet_v2 has published stage widths for "
                   f"{', '.join(map(str, SHUFFLENET_V2_WIDTHS))} only")
    return problem


class ArchConfig(BaseModel):
    """Micro- and macroarchitecture of one candidate: a SqueezeNet or a baseline family.

    Defaults are SqueezeNet v1.0 on ImageNet. ``preset`` fills in a named set first;
    fields given beside it override the preset. ``family`` selects the network; fields of
    another family are refused (:data:`SQUEEZENET_FIELDS`, :data:`BASELINE_FIELDS`), and a
    baseline's unset ``batch_norm``, ``dropout`` and ``init`` take its :data:`FAMILY_DEFAULTS`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # First, so the other fields' validators can read it.
    family: Family = Field("squeezenet", description="squeezenet, or a baseline network (dse.arch.families)")
    base_e: int = Field(128, description="expand filters of the first Fire module")
    incr_e: int = Field(128, description="expand filters added every freq modules")
    freq: int = Field(2, description="modules between width increments")
    pct3x3: float = Field(0.5, description="share of a Fire module's expand filters that are 3x3")
    sr: float = Field(0.125, description="squeeze ratio: squeeze filters / expand filters")
    num_fires: int = Field(8, description="depth: the number of Fire modules (fire2 .. fire{num_fires+1})")
    stem: Stem = "v1.0"
    stem_filters: int | None = Field(None, description="override the stem's conv1 width")
    downsample_at: tuple[float, ...] | None = Field(
        None, description="one fraction of depth per 3x3/2 max pool (0 = after the stem, 1 = after the last Fire "
        "module; round(f * num_fires), halves up); [] for none; default: the stem's layout")
    pool_after: Any = Field(None, exclude=True, description="retired, see downsample_at; only null is accepted")
    bypass: Bypass = "none"
    batch_norm: bool = Field(False, description="not in the paper: BatchNorm after every conv but conv10")
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    head_relu: bool = Field(True, description="the paper's ReLU after conv10; with few classes a class whose "
                            "logit dies at 0 never recovers, so small-image runs may turn it off")
    init: Init = "caffe"
    num_classes: int = 1000
    input_shape: tuple[int, int, int] = (227, 227, 3)
    width_multiplier: float = Field(1.0, description="baselines: every width times this (shufflenet_v2: 0.5, 1, 1.5, 2)")
    depth: int = Field(20, description="resnet: 6n + 2 layers (20, 32, 44, 56, 110, ...)")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and "preset" in data:
            data = dict(data)
            name = data.pop("preset")
            if name not in PRESETS:
                raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
            data = {**PRESETS[name], **data}
        if isinstance(data, dict) and data.get("family") in FAMILY_DEFAULTS:
            data = {**FAMILY_DEFAULTS[data["family"]], **data}
        return data

    @field_validator(*SQUEEZENET_FIELDS, "width_multiplier", "depth")
    @classmethod
    def _of_this_family(cls, value: Any, info: ValidationInfo) -> Any:
        # Runs on given values only (defaults are not validated), so a family's defaults never trip it.
        problem = "family" in info.data and misplaced_field(info.field_name, info.data["family"])
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("width_multiplier", "depth")
    @classmethod
    def _fits_the_family(cls, value: float, info: ValidationInfo) -> float:
        family = info.data.get("family", "squeezenet")
        problem = width_problem(family, value) if info.field_name == "width_multiplier" else depth_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("stem")
    @classmethod
    def _stem_of_this_family(cls, value: str, info: ValidationInfo) -> str:
        if value == "v1.1" and info.data.get("family", "squeezenet") != "squeezenet":
            raise ValueError(f"stem=v1.1 is a SqueezeNet stem; family={info.data['family']} takes v1.0 (its ImageNet "
                             "layout) or small (its small-image layout, dse.arch.families)")
        return value

    @model_serializer(mode="wrap")
    def _only_this_familys_fields(self, handler) -> dict[str, Any]:
        unused = (SQUEEZENET_FIELDS | BASELINE_ONLY_FIELDS) - family_fields(self.family)
        if self.family == "squeezenet":
            unused |= {"family"}
        return {key: value for key, value in handler(self).items() if key not in unused}

    @field_validator(*BOUNDS)
    @classmethod
    def _within_bounds(cls, value: Any, info: ValidationInfo) -> Any:
        problem = bound_violation(info.field_name, value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("downsample_at")
    @classmethod
    def _distinct_positions(cls, value: tuple[float, ...] | None, info: ValidationInfo) -> tuple[float, ...] | None:
        num_fires = info.data.get("num_fires")  # absent when num_fires itself failed
        problem = value is not None and num_fires is not None and downsample_problem(value, num_fires)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("pool_after")
    @classmethod
    def _pool_after_retired(cls, value: Any, info: ValidationInfo) -> None:
        problem = retired_pool_after(value, info.data.get("num_fires") or 8)
        if problem:
            raise ValueError(problem)
        return None

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
    name: str  # fire2 .. fire{num_fires+1}, the paper's names
    index: int  # 0 .. num_fires-1, the metaparameter index
    in_channels: int
    squeeze: int
    expand1x1: int
    expand3x3: int
    bypass: Literal["none", "identity", "conv"]
    pool_after: bool  # a 3x3/2 max pool follows this module

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
    stem_pool: bool = True  # maxpool1 right after conv1 (downsample_at position 0)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.config.input_shape

    @property
    def pool_positions(self) -> tuple[int, ...]:
        """Modules before each max pool, in order: 0 = the stem, k = the k-th Fire module."""
        return (0,) * self.stem_pool + tuple(f.index + 1 for f in self.fires if f.pool_after)


def pool_name(position: int) -> str:
    """The paper's name of the max pool after ``position`` modules: maxpool1 after conv1, maxpool4 after fire4."""
    return f"maxpool{position + 1}"


def pooled_layer(position: int) -> str:
    """The layer a pool at ``position`` follows: conv1 for 0, else fire{position + 1}."""
    return "conv1" if position == 0 else f"fire{position + 1}"


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
    problem = retired_pool_after(cfg.pool_after, cfg.num_fires)
    if not problem and cfg.downsample_at is not None:
        problem = downsample_problem(cfg.downsample_at, cfg.num_fires)
    if problem:
        raise SpecError(problem)


def downsample_fractions(cfg: ArchConfig) -> tuple[float, ...]:
    """``downsample_at``, or the stem's default layout when unset."""
    return STEMS[cfg.stem].downsample_at if cfg.downsample_at is None else cfg.downsample_at


def pool_positions(cfg: ArchConfig) -> tuple[int, ...]:
    """Sorted module counts after which a max pool sits (0 = the stem); assumes a validated config
    (so only the stem's default layout can repeat a position, and a repeat is one pool).

    >>> pool_positions(ArchConfig(stem="v1.1")), pool_positions(ArchConfig(stem="v1.1", num_fires=16))
    ((0, 2, 4), (0, 4, 8))
    >>> pool_positions(ArchConfig(num_fires=4)), pool_positions(ArchConfig(downsample_at=[1, 0.5]))
    ((0, 2, 4), (4, 8))
    """
    return tuple(sorted({round_width(f * cfg.num_fires) for f in downsample_fractions(cfg)}))


def _bypass_kind(cfg: ArchConfig, i: int, cin: int, cout: int) -> Literal["none", "identity", "conv"]:
    if cfg.bypass == "none":
        return "none"
    if cfg.bypass == "simple":
        if i % SIMPLE_BYPASS_EVERY != 1:
            return "none"
        if cin != cout:
            raise SpecError(
                f"bypass=simple: fire{i + 2} input width {cin} != output width {cout}, so an identity "
                "bypass cannot apply (use bypass=complex, or freq/incr_e that keep its widths equal)"
            )
        return "identity"
    return "identity" if cin == cout else "conv"


def expand(cfg: ArchConfig) -> NetSpec | GraphSpec:
    """Build the layer spec of one candidate; raises :class:`SpecError` on invalid input.

    A SqueezeNet gives a :class:`NetSpec`; a baseline family a :class:`~dse.arch.families.GraphSpec`.
    """
    if cfg.family != "squeezenet":
        from dse.arch.families import expand_family  # it builds on this module

        return expand_family(cfg)
    validate(cfg)
    stem = STEMS[cfg.stem]
    pools = set(pool_positions(cfg))
    channels = cfg.input_shape[2]
    conv1 = ConvSpec("conv1", channels, cfg.stem_filters or stem.filters, stem.kernel, stem.stride, stem.padding)
    fires = []
    cin = conv1.filters
    for i in range(cfg.num_fires):
        s, e1, e3 = expand_widths(i, cfg)
        fires.append(FireSpec(f"fire{i + 2}", i, cin, s, e1, e3, _bypass_kind(cfg, i, cin, e1 + e3), i + 1 in pools))
        cin = e1 + e3
    conv10 = ConvSpec("conv10", cin, cfg.num_classes, 1)  # conv10 at every depth: checkpoints and compression use the name
    spec = NetSpec(cfg, conv1, tuple(fires), conv10, stem_pool=0 in pools)
    _check_spatial(spec)
    return spec


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def pool_out(size: int) -> int:
    """3x3/2 max pool with Caffe's ceil rounding (torchvision ``ceil_mode=True``)."""
    return math.ceil((size - 3) / 2) + 1


def _check_spatial(spec: NetSpec) -> None:
    """conv1's kernel must fit the input, and each 3x3/2 pool a map of at least 3x3 (so it
    never shrinks a map below 1x1); the message names the first layer that does not fit."""
    h, w, _ = spec.input_shape
    c1 = spec.conv1
    steps = [("conv1", c1.kernel - 2 * c1.padding, lambda s: conv_out(s, c1.kernel, c1.stride, c1.padding))]
    steps += [(pool_name(k), 3, pool_out) for k in spec.pool_positions]
    for name, smallest, shrink in steps:
        if min(h, w) < smallest:
            raise SpecError(
                f"input_shape={list(spec.input_shape)}, downsample_at={list(downsample_fractions(spec.config))}: "
                f"too small for the pooling chain ({name} gets {h}x{w}, needs {smallest}x{smallest}); "
                "use a larger input, the 'small' stem, or fewer downsample_at positions"
            )
        h, w = shrink(h), shrink(w)
