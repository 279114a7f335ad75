"""The generator: metaparameters -> spec (a SqueezeNet's, or a baseline family's graph) -> analytics and Flax model."""

from dse._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "spec": ("ArchConfig", "FireSpec", "NetSpec", "PRESETS", "STEMS", "expand", "round_width"),
    "families": ("GraphSpec",),
    "analytics": ("LayerStats", "Summary", "summarize"),
    "energy": ("EnergyEstimate", "estimate_energy"),
    "model": ("GraphNet", "SqueezeNet", "build_model", "count_params", "init_variables"),
})
