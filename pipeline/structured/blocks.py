"""Whole blocks removed (`--remove_blocks=N`): layer granularity, the coarsest cut.

- A residual block, `Add(x, branch(x))` with an identity skip (MobileNetV2's inverted
  residuals), is removed exactly: the block becomes x, which is what the model computes with
  the branch's output zeroed. `remove` rebuilds the graph without the branch and the Add,
  and the stage checks, before any fine-tuning, that the smaller model equals the original
  with those branches zeroed (`zeroed`).
- In a Sequential model, a Conv2D, SeparableConv2D or Dense layer whose output has its input's
  shape (a Dense n -> n, a same-padded convolution keeping its channels) is a block too;
  removing it replaces it by the identity, which is not exact, and the report says so.
Blocks are ranked by how much the validation loss rises with each one alone removed, least
first; the N cheapest go, then the model is fine-tuned (--fine_tune_epochs).
"""

import dataclasses
import os
from typing import Dict, List

from absl import logging
import numpy as np

from pipeline import data as data_lib
from pipeline.models import flatten
from pipeline.structured import surgery
from pipeline.models import train as train_lib
from pipeline.config import Config, FlagError

import tf_keras as keras  # pylint: disable=g-bad-import-order

EQUIVALENCE_TOLERANCE = 1e-4
EXAMPLES = 1000  # Validation images to rank the blocks by.


@dataclasses.dataclass(frozen=True)
class Block:
  name: str  # The Add layer (residual), or the layer itself.
  start: str  # The layer whose output enters the block (and leaves it after removal).
  layers: List[str]  # Everything removed with it.
  exact: bool  # A residual block: removing it equals zeroing its branch.


def find(model) -> List[Block]:
  """The removable blocks of `model`, in graph order."""
  chain = isinstance(model, keras.Sequential)
  model = flatten.as_functional(model)
  config = model.get_config()
  by_name = {lc["name"]: lc for lc in config["layers"]}
  parents = {lc["name"]: [n[0] for n in (lc["inbound_nodes"][0] if lc["inbound_nodes"] else [])]
             for lc in config["layers"]}
  children: Dict[str, List[str]] = {n: [] for n in parents}
  for n, ps in parents.items():
    for p in ps:
      children[p].append(n)
  outputs = {o[0] for o in config["output_layers"]}
  blocks = []
  for lc in config["layers"]:
    name = lc["name"]
    if lc["class_name"] == "Add" and len(parents[name]) == 2:
      for skip, branch_end in (parents[name], parents[name][::-1]):
        inside = _between(skip, branch_end, parents)
        if inside is not None and all(set(children[n]) <= inside | {name} for n in inside):
          blocks.append(Block(name, skip, sorted(inside, key=list(by_name).index) + [name],
                              True))
          break
    elif (chain and lc["class_name"] in surgery.PRODUCERS and name not in outputs
          and len(lc["inbound_nodes"]) == 1):
      layer = model.get_layer(name)
      if tuple(layer.input.shape) == tuple(layer.output.shape):
        blocks.append(Block(name, parents[name][0], [name], False))
  return blocks


def _between(skip: str, end: str, parents) -> set:
  """The layers on every path from `skip` (excluded) back from `end` (included), or None if a
  path reaches the model's input without passing `skip`."""
  inside, todo = set(), [end]
  while todo:
    n = todo.pop()
    if n == skip or n in inside:
      continue
    if not parents[n]:
      return None
    inside.add(n)
    todo.extend(parents[n])
  return inside


def remove(model, blocks: List[Block]):
  """A new model without `blocks`: whatever read a block's output reads its start instead."""
  config = flatten.as_functional(model).get_config()
  gone = {n for b in blocks for n in b.layers}
  start = {b.name: b.start for b in blocks}

  def source(name):
    while name in start:
      name = start[name]
    return name

  layers = []
  for lc in config["layers"]:
    if lc["name"] in gone:
      continue
    for node in lc["inbound_nodes"]:
      for ref in node:
        if ref[0] in start:
          ref[0], ref[1], ref[2] = source(ref[0]), 0, 0
    layers.append(lc)
  config["layers"] = layers
  for ref in config["output_layers"]:
    if ref[0] in start:
      ref[0], ref[1], ref[2] = source(ref[0]), 0, 0
  small = keras.Model.from_config(config)
  old = flatten.as_functional(model)
  for layer in small.layers:
    layer.set_weights(old.get_layer(layer.name).get_weights())
  return small


def zeroed(model, blocks: List[Block]):
  """A copy of `model` with each residual block's branch output zeroed (its last layer's
  weights set to 0: a BatchNorm's gamma and beta, or a producer's kernel and bias); what
  `remove` must equal for exact blocks."""
  ref = flatten.clone_with_weights(flatten.as_functional(model))
  for b in blocks:
    if not b.exact:
      continue
    last = ref.get_layer(b.layers[-2])  # The branch's end, just before the Add.
    w = last.get_weights()
    if type(last).__name__ == "BatchNormalization":
      w[0][:] = 0  # gamma
      w[1][:] = 0  # beta
    else:
      w = [np.zeros_like(v) for v in w]
    last.set_weights(w)
  return ref


def rank(model, blocks: List[Block], x: np.ndarray, y: np.ndarray) -> Dict[str, float]:
  """{block: validation loss increase with that block alone removed}."""
  base = train_lib.cross_entropy(model, x, y)
  return {b.name: train_lib.cross_entropy(remove(model, [b]), x, y) - base for b in blocks}


def check(model, cfg: Config) -> None:
  """One-line ValueErrors for --remove_blocks, before any training."""
  if not cfg.remove_blocks:
    return
  if cfg.target_speedup:
    raise FlagError("remove_blocks", cfg.remove_blocks, "--target_speedup plans on the "
                    "whole baseline; use one or the other")
  found = len(find(model))
  if found < cfg.remove_blocks:
    raise FlagError("remove_blocks", cfg.remove_blocks, f"{model.name} has {found} removable "
                    "block(s) (residual blocks with an identity skip, or in a Sequential model "
                    "layers whose output has their input's shape)")


def remove_blocks(model, data: data_lib.Dataset, cfg: Config, workdir: str, callbacks=()):
  """The stage: rank, remove the cfg.remove_blocks cheapest, check, fine-tune.

  Returns:
    (the smaller fine-tuned model, a report dict).

  Raises:
    ValueError: fewer removable blocks than asked (one line naming the flag).
    RuntimeError: an exact removal differs from the zeroed original (a bug).
  """
  check(model, cfg)
  found = find(model)
  x, y = data_lib.sample(data.validation, EXAMPLES, cfg.seed)
  costs = rank(model, found, x, y)
  chosen = sorted(found, key=lambda b: costs[b.name])[:cfg.remove_blocks]
  small = remove(model, chosen)
  exact = [b for b in chosen if b.exact]
  diff = None
  if exact:
    # The inexact ones are removed in both models, so the exact ones are compared alone.
    rest = [b for b in chosen if not b.exact]
    ref = zeroed(remove(model, rest) if rest else model, exact)
    diff = float(np.max(np.abs(ref.predict(x[:64], verbose=0) - small.predict(x[:64],
                                                                               verbose=0))))
    if diff > EQUIVALENCE_TOLERANCE:
      raise RuntimeError(f"removing {', '.join(b.name for b in exact)} differs from zeroing "
                         f"their branches by {diff:.2e} (> {EQUIVALENCE_TOLERANCE:g})")
  before = train_lib.evaluate(small, data.test)
  logging.info("Removed blocks %s (validation loss +%s); test accuracy before fine-tuning %.4f.",
               [b.name for b in chosen], [round(costs[b.name], 4) for b in chosen], before)
  if cfg.fine_tune_epochs:
    train_lib.fine_tune(small, data, cfg, os.path.join(workdir, "logs", "blocks"),
                        callbacks=callbacks)
  return small, {
      "asked": cfg.remove_blocks, "candidates": len(found),
      "removed": [{"block": b.name, "layers": len(b.layers), "exact": b.exact,
                   "validation_loss_increase": costs[b.name]} for b in chosen],
      "max_abs_diff_vs_zeroed": diff, "test_accuracy_before_fine_tuning": before,
      "test_accuracy_after_fine_tuning": train_lib.evaluate(small, data.test)}
