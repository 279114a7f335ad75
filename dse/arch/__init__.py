"""The SqueezeNet generator: metaparameters -> spec -> analytics and Flax model."""

from dse._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "spec": ("ArchConfig", "FireSpec", "NetSpec", "PRESETS", "STEMS", "expand", "round_width"),
    "analytics": ("LayerStats", "Summary", "summarize"),
    "model": ("SqueezeNet", "build_model", "count_params", "init_variables"),
})
