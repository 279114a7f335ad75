"""Deep Compression (Han et al., 2016) for dse's SqueezeNets: prune, fold BatchNorm,
weight-share, Huffman-code into a checksummed ``.dsez`` file, and evaluate each step."""

from dse._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "prune": ("apply_masks", "kernel_sparsity", "magnitude_masks"),
    "fold": ("fold_batch_norm", "folded_model_config"),
    "quantize": ("QuantizedParams", "dequantize", "quantize_params"),
    "container": ("read", "read_quantized", "write"),
    "finetune": ("centroid_step", "evaluate", "masked_train_step"),
    "config": ("CompressConfig",),
    "pipeline": ("Step", "compress_run", "evaluate_file"),
})
