"""Clustering and quantization-aware training: TF-MOT's collaborative optimization.

Defined here, read by pipeline/flags/__init__.py (`config_from_flags`) only.
"""

from absl import flags

TITLE = 'Clustering and quantization-aware training: fewer distinct weights, a better int8 file'

CLUSTER = flags.DEFINE_integer(
    "cluster", 0, "After pruning, cluster each Conv2D and Dense kernel of the pruning scope to "
    "this many distinct values (TF-MOT cluster_weights, k-means++, zeros kept), fine-tune the "
    "centroids, and strip: a file of few values gzips far smaller (Deep Compression). 0: off; "
    "2..255. DepthwiseConv2D layers are left whole (TF-MOT cannot cluster them).")
CLUSTER_PER_CHANNEL = flags.DEFINE_bool(
    "cluster_per_channel", False, "With --cluster: that many values per output channel instead "
    "of per kernel (more accurate, a little larger).")
CLUSTER_EPOCHS = flags.DEFINE_integer("cluster_epochs", 2, "With --cluster: epochs of "
                                      "fine-tuning the centroids.")
QUANTIZE_AWARE = flags.DEFINE_bool(
    "quantize_aware", False, "A last fine-tune with int8 rounding simulated (TF-MOT's "
    "quantize API), keeping pruning's zeros (PQAT) or clustering's values (CQAT); the full-int8 "
    "file qat_int8 comes from it, beside the post-training int8 file where --export_formats "
    "has int8 for both.")
QAT_EPOCHS = flags.DEFINE_integer("qat_epochs", 2, "With --quantize_aware: epochs of "
                                  "quantization-aware fine-tuning.")
QAT_LR = flags.DEFINE_float("qat_learning_rate", 1e-5, "With --quantize_aware: its Adam "
                            "learning rate (the fake-quantized model is fine-tuned gently).")
