"""The SqueezeNet generator: metaparameters -> spec -> analytics and Flax model."""

from dse.arch.analytics import LayerStats, Summary, summarize
from dse.arch.model import SqueezeNet, build_model, count_params, init_variables
from dse.arch.spec import PRESETS, STEMS, ArchConfig, FireSpec, NetSpec, expand, round_width

__all__ = [
    "PRESETS", "STEMS", "ArchConfig", "FireSpec", "LayerStats", "NetSpec", "SqueezeNet", "Summary",
    "build_model", "count_params", "expand", "init_variables", "round_width", "summarize",
]
