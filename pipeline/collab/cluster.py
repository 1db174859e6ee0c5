"""Weight clustering (`--cluster=N`, TF-MOT's `cluster_weights`): each clustered kernel is left
with at most N distinct values (per output channel with --cluster_per_channel), its zeros kept
(`preserve_sparsity=True`), after a short fine-tune of the centroids. Pruning then clustering
then int8 is Deep Compression's path: a file of few distinct values gzips far smaller.

TF-MOT cannot cluster a DepthwiseConv2D (TF-MOT #1132); such layers are left whole and named.
"""

import dataclasses
import os
from typing import Dict, List

from absl import logging
import numpy as np
import tensorflow_model_optimization as tfmot  # Public API only (tfmot.clustering.keras).

from pipeline import data as data_lib
from pipeline.config import Config, FlagError
from pipeline.models import flatten
from pipeline.models import sparsity as sparsity_lib
from pipeline.models import train as train_lib

import tf_keras as keras  # pylint: disable=g-bad-import-order

CLUSTERABLE = ("Conv2D", "Dense")


@dataclasses.dataclass(frozen=True)
class ClusterResult:
  model: keras.Model  # Stripped of clustering wrappers.
  layers: List[str]  # The layers clustered.
  skipped: Dict[str, str]  # Layers in the pruning scope left whole, and why.
  fit: train_lib.FitResult


def choose(model: keras.Model, cfg: Config):
  """(layers to cluster, {layer left whole: why}): of the layers with a kernel, those
  --pruning_scope takes (by default not the first and not the classifier), the Conv2D and
  Dense ones whose kernels hold more weights than clusters."""
  chosen, skipped = [], {}
  names = [l.name for l in model.layers if sparsity_lib.kernel_of(l) is not None]
  if cfg.pruning_scope == "inner" and len(names) > 2:
    names = names[1:-1]
  for name in names:
    layer = model.get_layer(name)
    kind = type(layer).__name__
    kernel = sparsity_lib.kernel_of(layer)
    if kind == "DepthwiseConv2D":
      skipped[name] = "TF-MOT cannot cluster a DepthwiseConv2D (TF-MOT #1132)"
    elif kind not in CLUSTERABLE:
      skipped[name] = f"{kind}: TF-MOT clusters Conv2D and Dense layers here"
    elif kernel is None or kernel.size <= cfg.cluster:
      skipped[name] = f"its kernel has no more weights than --cluster={cfg.cluster}"
    else:
      chosen.append(name)
  return chosen, skipped


def check(model: keras.Model, cfg: Config) -> None:
  """Raises FlagError naming --cluster when no layer of `model` can be clustered."""
  if not cfg.cluster:
    return
  chosen, skipped = choose(model, cfg)
  if not chosen:
    why = "; ".join(f"{n}: {w}" for n, w in list(skipped.items())[:4]) or "no layer in scope"
    raise FlagError("cluster", cfg.cluster, f"the model has nothing to cluster ({why})")


def cluster(model: keras.Model, data: data_lib.Dataset, cfg: Config, workdir: str,
            callbacks=()) -> ClusterResult:
  """Clusters a copy of `model` (pruned or not) to cfg.cluster values per kernel (per channel
  with cfg.cluster_per_channel), keeping its zeros, fine-tunes the centroids for
  cfg.cluster_epochs at the fine-tuning learning rate, and strips the wrappers.

  Raises:
    FlagError: nothing to cluster.
  """
  check(model, cfg)
  chosen, skipped = choose(model, cfg)
  ci = tfmot.clustering.keras.CentroidInitialization

  def wrap(layer):
    if layer.name not in chosen:
      return layer
    return tfmot.clustering.keras.cluster_weights(
        layer, number_of_clusters=cfg.cluster, cluster_centroids_init=ci.KMEANS_PLUS_PLUS,
        preserve_sparsity=True, cluster_per_channel=cfg.cluster_per_channel)

  keras.utils.set_random_seed(cfg.seed)  # k-means++ draws its first centroids at random.
  wrapped = keras.models.clone_model(flatten.clone_with_weights(model), clone_function=wrap)
  logging.info("Clustering %s to %d values per %s, zeros kept.", ", ".join(chosen), cfg.cluster,
               "output channel" if cfg.cluster_per_channel else "kernel")
  fit = train_lib.fine_tune(wrapped, data, cfg, os.path.join(workdir, "logs", "cluster"),
                            epochs=cfg.cluster_epochs, callbacks=callbacks)
  return ClusterResult(tfmot.clustering.keras.strip_clustering(wrapped), chosen, skipped, fit)


def distinct(kernel: np.ndarray, per_channel: bool) -> int:
  """Distinct values of a kernel, or the most of any output channel (its last axis)."""
  if not per_channel:
    return int(np.unique(kernel).size)
  rows = kernel.reshape(-1, kernel.shape[-1]).T
  return max(int(np.unique(r).size) for r in rows)


def describe(model: keras.Model, layers: List[str], per_channel: bool) -> Dict[str, dict]:
  """{layer: {"distinct": values per kernel (or most per channel), "zeros": fraction}}."""
  out = {}
  for name in layers:
    k = sparsity_lib.kernel_of(model.get_layer(name))
    out[name] = {"distinct": distinct(k, per_channel), "zeros": float(np.mean(k == 0))}
  return out
