"""Deployment: ONNX export, inference latency (ONNX Runtime and JAX) and estimated energy per inference."""

from dse._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "inference_model": ("InferenceModel", "load_inference_model"),
    "onnx_export": ("build_onnx", "export_model"),
    "latency": ("LatencyReport", "Timing", "measure_latency"),
    "energy": ("EnergyEstimate", "estimate_energy"),
})
