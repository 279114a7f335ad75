"""Deployment: ONNX export and inference latency (ONNX Runtime and JAX).

Estimated energy, an analytic cost, is :mod:`dse.arch.energy`.
"""

from dse._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "inference_model": ("InferenceModel", "load_inference_model"),
    "onnx_export": ("build_onnx", "export_model"),
    "latency": ("LatencyReport", "Timing", "measure_latency"),
})
