"""Sparsity patterns through TF-MOT's own parameters: N:M (`--sparsity_m_by_n=2,4`) and blocks
(`--block_size=1,4`), checked in the exported file, not just asked for.

- `--sparsity_m_by_n=M,N`: at least M zeros in every N consecutive weights along the input
  channels, as TFLite stores them ([out, kh, kw, in] and [out, in]), the layout sparse
  kernels that use the pattern read; the rate is then M/N (--pruning_rate is not used).
- `--block_size=R,C`: weights removed in R x C blocks of the Keras kernel [in, out]. TF-MOT
  allows blocks for 2-D kernels only, so only the Dense layers in scope are pruned.
- `--pruning_policy=xnnpack`: TF-MOT's PruneForLatencyOnXNNPack, which prunes only the 1x1
  convolutions, and only of a graph XNNPACK's sparse inference can take (a 3x3 stride-2 VALID
  convolution on 3 channels after ZeroPadding2D(1) first, supported layers up to a
  GlobalAveragePooling2D(keepdims=True)); `--model=sparse_mobilenet` is built to qualify.
All need TF-MOT's magnitude schedules (polynomial or constant).
"""

from typing import Dict, List, Tuple

import numpy as np

from export import graph as graph_lib
from pipeline.models import sparsity
from pipeline import rules
from pipeline.config import Config, FlagError


def qualifies(model) -> Tuple[bool, str]:
  """Whether TF-MOT's PruneForLatencyOnXNNPack accepts `model`'s graph, and its reason if not."""
  import tensorflow_model_optimization as tfmot  # pylint: disable=g-import-not-at-top
  try:
    tfmot.sparsity.keras.PruneForLatencyOnXNNPack().ensure_model_supports_pruning(model)
  except ValueError as e:
    return False, " ".join(str(e).split())
  return True, ""


def check_model(model, cfg: Config) -> None:
  """--pruning_policy=xnnpack: a one-line ValueError, before training, if the graph does not
  qualify."""
  if cfg.pruning_policy:
    ok, why = qualifies(model)
    if not ok:
      raise FlagError("pruning_policy", "xnnpack", f"{model.name} does not qualify for "
                      f"XNNPACK's sparse inference ({why}); --model=sparse_mobilenet does")


def policy_layers(model) -> List[str]:
  """The layers PruneForLatencyOnXNNPack prunes: the 1x1 convolutions."""
  import tensorflow_model_optimization as tfmot  # pylint: disable=g-import-not-at-top
  allow = tfmot.sparsity.keras.PruneForLatencyOnXNNPack().allow_pruning
  return [l.name for l in model.layers if allow(l)]


def wrap_kwargs(cfg: Config) -> dict:
  """What prune_low_magnitude takes for the pattern (nothing without one)."""
  m_by_n = rules.pattern(cfg.sparsity_m_by_n, "sparsity_m_by_n")
  block = rules.pattern(cfg.block_size, "block_size")
  return ({"sparsity_m_by_n": m_by_n} if m_by_n else {}) | (
      {"block_size": block} if block else {})


def rates(cfg: Config, model, asked: Dict[str, float]) -> Dict[str, float]:
  """The per-layer rates under the pattern: M/N for every layer with M:N; only the Dense
  layers (2-D kernels) with blocks.

  Raises:
    ValueError: blocks asked but no Dense layer in scope.
  """
  m_by_n = rules.pattern(cfg.sparsity_m_by_n, "sparsity_m_by_n")
  if m_by_n:
    return {n: m_by_n[0] / m_by_n[1] for n in asked}
  if rules.pattern(cfg.block_size, "block_size"):
    dense = {n: r for n, r in asked.items()
             if len(sparsity.pruned_weight(model.get_layer(n)).shape) == 2}
    if not dense:
      raise FlagError("block_size", cfg.block_size, f"TF-MOT prunes blocks of 2-D kernels "
                      f"only, and no Dense layer is in scope ({', '.join(asked)})")
    return dense
  return asked


def violations(path: str, layers: List[str], cfg: Config) -> Dict[str, int]:
  """{layer: groups that break the pattern} in a float32 .tflite file, for the pruned
  `layers`: N:M groups (along the stored input channels) with fewer than M zeros, or blocks
  (of the Keras kernel) neither all zero nor all kept. Empty without a pattern."""
  m_by_n = rules.pattern(cfg.sparsity_m_by_n, "sparsity_m_by_n")
  block = rules.pattern(cfg.block_size, "block_size")
  if not (m_by_n or block):
    return {}
  out = {}
  for layer in graph_lib.read(path, layers).layers:
    if layer.name not in layers or layer.values is None:
      continue
    w = layer.values.reshape(layer.shape)
    if m_by_n:
      m, n = m_by_n
      rows = w.reshape(-1, w.shape[-1])
      pad = (-rows.shape[1]) % n  # A short last group counts its padding as zeros.
      groups = np.pad(rows, [(0, 0), (0, pad)]).reshape(-1, n)
      out[layer.name] = int(np.sum(np.sum(groups == 0, axis=1) < m))
    elif layer.op == "FULLY_CONNECTED":
      r, c = block
      kernel = w.T  # FULLY_CONNECTED stores [out, in]; the Keras kernel is [in, out].
      h, v = kernel.shape[0] // r * r, kernel.shape[1] // c * c
      tiles = kernel[:h, :v].reshape(h // r, r, v // c, c).swapaxes(1, 2).reshape(-1, r * c)
      zeros = np.sum(tiles == 0, axis=1)
      out[layer.name] = int(np.sum((zeros > 0) & (zeros < r * c)))
  return out


def describe(cfg: Config) -> str:
  if cfg.sparsity_m_by_n:
    m, n = rules.pattern(cfg.sparsity_m_by_n, "sparsity_m_by_n")
    return f"{m}:{n} (at least {m} zeros in every {n} consecutive input weights)"
  if cfg.block_size:
    r, c = rules.pattern(cfg.block_size, "block_size")
    return f"{r}x{c} blocks (Dense layers only: TF-MOT's blocks need 2-D kernels)"
  if cfg.pruning_policy:
    return "PruneForLatencyOnXNNPack (the 1x1 convolutions only)"
  return ""
