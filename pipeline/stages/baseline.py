"""The "baseline" stage: the loaded (--baseline_path) or freshly trained model, saved as
baseline.keras, and its report row."""

import dataclasses
from typing import Optional

from absl import logging
import numpy as np

from export import console as console_lib
from export import verify as verify_lib
from pipeline import data as data_lib
from pipeline.config import Config
from pipeline.models import macs as macs_lib
from pipeline.models import train as train_lib
from pipeline.models import sparsity as sparsity_lib


def stage(cfg: Config, data: data_lib.Dataset, loaded, fresh, wd: str,
          con: console_lib.Console, seconds: dict):
  """The `loaded` model (--baseline_path), or `fresh` trained on `data` (TensorBoard logs in
  wd/logs/baseline). Returns (model, fit); fit is None for a loaded model."""
  with con.stage("baseline", seconds) as info:
    if loaded is not None:
      model, fit = loaded, None
      info["summary"] = f"loaded {cfg.baseline_path or 'the model given'}"
    else:
      model = fresh
      fit = train_lib.train_baseline(model, data, cfg, wd, [console_lib.epoch_bar(con, "baseline")])
      info["summary"] = (f"{cfg.model}, kept epoch {fit.best_epoch} of {cfg.epochs} "
                         f"(validation accuracy {fit.best_val_accuracy:.2%})")
  return model, fit


def row(model, fit: Optional[train_lib.FitResult], outputs: np.ndarray,
        data: data_lib.Dataset, prep, cfg: Config) -> dict:
  """The report's baseline row: test accuracy (from `outputs` on the test split), the epoch
  kept, sparsity, parameters, MACs, what its head outputs and how it trains, and how a Keras 3
  model was carried over (`prep`: job.Prepared), and the fine-tuning learning rate chosen
  for it."""
  r = {
      "test_accuracy": verify_lib.top1_accuracy(outputs, data.test.labels, prep.head),
      "path": "baseline.keras",
      "best_epoch": fit.best_epoch if fit else None,
      "val_accuracy": fit.best_val_accuracy if fit else None,
      "model_sparsity": sparsity_lib.summarize(model, [])["model_sparsity"],
      "params": int(model.count_params()), "macs": macs_lib.count(model),
      "keras3": dataclasses.asdict(prep.keras3) if prep.keras3 else None,
      "head": dict(prep.head.to_json(), describe=prep.head.describe(data.class_names),
                   check=prep.head_check),
      "fine_tune_learning_rate": dict(zip(("value", "why"), train_lib.fine_tune_learning_rate(
          model, cfg))),
  }
  logging.info("Baseline test accuracy: %.4f", r["test_accuracy"])
  return r
