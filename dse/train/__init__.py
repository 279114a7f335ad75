"""The JAX trainer: config schema, optimizer factory, pure steps, ``train_and_evaluate``."""

from dse._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "trainer": ("train_and_evaluate",),
    "hooks": ("Hooks",),
    "config": ("OptimConfig", "TrainConfig"),
})
