"""Quantization-aware fine-tuning (`--quantize_aware`, TF-MOT's quantize API): the model
fine-tunes with int8 rounding simulated in its forward pass, so the int8 file the converter
makes from it (with the ranges learned here) loses less than post-training quantization.

The scheme keeps what came before (TF-MOT's collaborative optimization): pruning's zeros
(`Default8BitPrunePreserveQuantizeScheme`, PQAT), clustering's values and zeros
(`Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=True)`, CQAT), or neither (the
default 8-bit scheme). A layer TF-MOT's 8-bit registry has no config for (Rescaling, the
augmentation layers, arithmetic such as preprocess_input) gets a QuantizeConfig that quantizes
its output only: the op stays float and the next layer reads int8, as the converter would make
it; the report names each such layer.
"""

import copy
import dataclasses
import os
import re
from typing import Dict, List

from absl import logging
import numpy as np
import tensorflow_model_optimization as tfmot  # Public API, and the 8-bit registry below.
# pylint: disable=g-direct-tensorflow-import
from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve \
    import cluster_preserve_quantize_registry as cqat_registry
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_quantize_registry as registry_lib)
# pylint: enable=g-direct-tensorflow-import

from pipeline import data as data_lib
from pipeline.config import Config
from pipeline.models import flatten
from pipeline.models import train as train_lib

import tf_keras as keras  # pylint: disable=g-bad-import-order

PREFIX = "quant_"  # quantize_apply names each wrapped layer so: conv2 -> quant_conv2.
WEIGHTS = "qat.weights.npz"  # In the run directory: the QAT model's weights (save, load).


class OutputQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
  """Quantizes a layer's output only (8 bits, asymmetric, per tensor): for layers the 8-bit
  registry cannot take, so the layer after them still reads a quantized tensor."""

  def get_weights_and_quantizers(self, layer):
    return []

  def get_activations_and_quantizers(self, layer):
    return []

  def set_quantize_weights(self, layer, quantize_weights):
    pass

  def set_quantize_activations(self, layer, quantize_activations):
    pass

  def get_output_quantizers(self, layer):
    return [tfmot.quantization.keras.quantizers.MovingAverageQuantizer(
        num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

  def get_config(self):
    return {}


def scope():
  """Where TF-MOT's quantize API finds this module's config when it clones the model."""
  return tfmot.quantization.keras.quantize_scope(
      {"OutputQuantizeConfig": OutputQuantizeConfig})


@dataclasses.dataclass(frozen=True)
class QatResult:
  model: keras.Model  # With TF-MOT's quantize wrappers: what the int8 file is converted from.
  scheme: str  # "prune-preserving (PQAT)", ...
  output_only: Dict[str, str]  # Layer -> why only its output is quantized.
  fit: train_lib.FitResult


class _PerLayerClusterPreserveRegistry(cqat_registry.Default8bitClusterPreserveQuantizeRegistry):
  """TF-MOT 0.8.1's CQAT registry shares one weight quantizer per config class, and a layer
  without zeros (the first conv, the classifier) switches its preserve_sparsity off for every
  layer of that class: pruning's zeros then drift to the nearest centroid while it trains (a
  conv2 80% zeros -> 0% here). A quantizer of its own per layer keeps each layer's flag."""

  def get_quantize_config(self, layer):
    self._config_quantizer_map = {k: copy.copy(v)
                                  for k, v in self._config_quantizer_map.items()}
    return super().get_quantize_config(layer)


class _ClusterPreserveScheme(tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme):

  def get_quantize_registry(self):
    return _PerLayerClusterPreserveRegistry(self.preserve_sparsity)


def scheme_for(pruned: bool, clustered: bool):
  """(TF-MOT scheme, its name): the one that keeps clustering's or pruning's work."""
  combine = tfmot.experimental.combine
  if clustered:
    return (_ClusterPreserveScheme(preserve_sparsity=True),
            "cluster-preserving with sparsity (CQAT)")
  if pruned:
    return combine.Default8BitPrunePreserveQuantizeScheme(), "prune-preserving (PQAT)"
  return tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme(), "default 8-bit"


# Not in the 8-bit registry, but folded into the layer before them by TF-MOT's layout
# transforms (Conv2D/Dense/DepthwiseConv2D + BatchNormalization [+ ReLU]): annotated as they are.
_FOLDED = ("BatchNormalization", "SyncBatchNormalization")


def annotate(model: keras.Model, output_only=()):
  """(a copy of `model` with every layer annotated for quantization, {layer: why only its
  output is}): layers the default 8-bit registry supports, and BatchNorms its transforms fold,
  as they are; the others (and `output_only`) with an OutputQuantizeConfig. (The
  cluster-preserving registry claims to support them all but raises.)"""
  registry = registry_lib.Default8BitQuantizeRegistry()
  why = {}

  def mark(layer):
    if isinstance(layer, keras.layers.InputLayer):
      return layer
    if layer.name not in output_only and (registry.supports(layer) or
                                          type(layer).__name__ in _FOLDED):
      return tfmot.quantization.keras.quantize_annotate_layer(layer)
    why[layer.name] = (f"{type(layer).__name__}: TF-MOT's 8-bit scheme has no config for it "
                       "here; its op stays float and its output is quantized")
    return tfmot.quantization.keras.quantize_annotate_layer(layer, OutputQuantizeConfig())

  copy = flatten.clone_with_weights(model)
  return keras.models.clone_model(copy, clone_function=mark), why


def build(model: keras.Model, pruned: bool, clustered: bool):
  """(the quantization-aware copy of `model`, the scheme's name, {layer: why only its output
  is quantized}); the same model and flags always build the same graph, so a saved QAT model
  is its float model plus its weights (save, load).

  Raises:
    ValueError: a layer the quantize API refuses (TF-MOT's reason).
  """
  scheme, name = scheme_for(pruned, clustered)
  refused = set()
  while True:  # A layer quantize_apply refuses (a BatchNorm no conv precedes) quantizes its
    annotated, output_only = annotate(model, refused)  # output only; then it tries again.
    try:
      with scope():
        return tfmot.quantization.keras.quantize_apply(annotated, scheme), name, output_only
    except (ValueError, RuntimeError) as e:
      text = " ".join(str(e).split())
      found = re.match(r"Layer (\S+):<class", text)
      if not found or found.group(1) in refused:
        raise ValueError(f"--quantize_aware: TF-MOT's quantize API refused the model: "
                         f"{text[:300]}") from None
      refused.add(found.group(1))


def quantize_aware(model: keras.Model, data: data_lib.Dataset, cfg: Config, workdir: str,
                   pruned: bool, clustered: bool, callbacks=()) -> QatResult:
  """A copy of `model` (the float model the earlier stages left) fine-tuned with int8 rounding
  simulated, for cfg.qat_epochs at cfg.qat_learning_rate, under the scheme that keeps what
  pruning (`pruned`: it left zeros) or clustering (`clustered`) did.

  Raises:
    ValueError: a layer the quantize API refuses (named, with TF-MOT's reason).
  """
  qat_model, name, output_only = build(model, pruned, clustered)
  for layer, why in output_only.items():
    logging.info("Quantization-aware training: %s: %s.", layer, why)
  logging.info("Quantization-aware fine-tuning (%s) for %d epoch(s) at %g.", name,
               cfg.qat_epochs, cfg.qat_learning_rate)
  qat_cfg = dataclasses.replace(cfg, fine_tune_learning_rate=cfg.qat_learning_rate)
  fit = train_lib.fine_tune(qat_model, data, qat_cfg, os.path.join(workdir, "logs", "qat"),
                            epochs=cfg.qat_epochs, callbacks=callbacks)
  return QatResult(qat_model, name, output_only, fit)


def save(qat_model: keras.Model, path: str) -> None:
  """The QAT model's weights (its float model, saved beside, rebuilds the rest): tf_keras'
  .keras format does not round-trip TF-MOT's quantize layers."""
  tmp = path + ".tmp.npz"
  np.savez(tmp, *qat_model.get_weights())
  os.replace(tmp, path)


def load(model: keras.Model, path: str, pruned: bool, clustered: bool) -> keras.Model:
  """The QAT model `save` wrote to `path`, rebuilt from its float model `model`."""
  qat_model = build(model, pruned, clustered)[0]
  with np.load(path) as f:
    qat_model.set_weights([f[f"arr_{i}"] for i in range(len(f.files))])
  return qat_model


def wrapped_names(names: List[str]) -> List[str]:
  """The QAT model's names of the float model's layers `names`."""
  return [PREFIX + n for n in names]

