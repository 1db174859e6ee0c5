"""Chains the stages: data, baseline, structured, prune, strip, export, verify, timing, report."""

import dataclasses
import json
import os
from typing import Optional

from absl import logging
import numpy as np

from export import tflite as tflite_lib
from pipeline import data as data_lib
from pipeline import macs as macs_lib
from pipeline import measure as measure_lib
from pipeline import models as models_lib
from pipeline import prune as prune_lib
from pipeline import report as report_lib
from pipeline import sparsity as sparsity_lib
from pipeline import structured as structured_lib
from pipeline import train as train_lib
from pipeline import workdir as workdir_lib
from pipeline.config import Config


@dataclasses.dataclass(frozen=True)
class Prepared:
  """What preflight checked: everything a bad flag could break, before anything is written."""
  data: data_lib.Dataset
  baseline: Optional[object]  # A loaded --baseline_path model, or None to train one.
  schedule: Optional[prune_lib.Schedule]


def preflight(cfg: Config) -> Prepared:
  """Loads the data and any given baseline, and checks the schedule; writes nothing.

  Raises:
    ValueError: with a one-line message naming the flag and value at fault.
  """
  data = data_lib.load_dataset(cfg)
  baseline = None
  if cfg.baseline_path:
    baseline = models_lib.load_baseline(cfg.baseline_path, data.input_shape, data.num_classes)
  schedule = prune_lib.schedule_steps(cfg, len(data.x_train)) if cfg.prune else None
  workdir_lib.check(cfg.workdir, cfg.overwrite)
  return Prepared(data, baseline, schedule)


def run_job(cfg: Config, prep: Prepared, flags_text: str = "") -> dict:
  """Runs every stage into cfg.workdir and returns the report (also written there)."""
  wd = workdir_lib.prepare(cfg.workdir, cfg.overwrite)
  workdir_lib.atomic_write(os.path.join(wd, workdir_lib.MARKER), flags_text)
  workdir_lib.atomic_write(os.path.join(wd, "config.json"),
                           json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
  data, seconds = prep.data, {}
  x_test = data_lib.scaled(data.x_test)

  with measure_lib.stage("baseline", seconds):
    if prep.baseline is not None:
      baseline, fit = prep.baseline, None
      logging.info("Using the trained baseline from %s.", cfg.baseline_path)
    else:
      baseline = models_lib.build_model(cfg, data.input_shape, data.num_classes)
      fit = train_lib.train_baseline(baseline, data, cfg, wd)
    workdir_lib.save_keras(baseline, os.path.join(wd, "baseline.keras"))
  outputs = {"baseline": baseline.predict(x_test, batch_size=512, verbose=0)}
  base_sparsity = sparsity_lib.summarize(baseline, [])
  baseline_row = {
      "test_accuracy": float(np.mean(np.argmax(outputs["baseline"], -1) == data.y_test)),
      "path": "baseline.keras",
      "best_epoch": fit.best_epoch if fit else None,
      "val_accuracy": fit.best_val_accuracy if fit else None,
      "model_sparsity": base_sparsity["model_sparsity"],
  }
  logging.info("Baseline test accuracy: %.4f", baseline_row["test_accuracy"])

  final, pruned_row, fits = baseline, {}, {}
  if cfg.structured_rate > 0:
    with measure_lib.stage("structured", seconds):
      structured = structured_lib.prune_structures(baseline, data, cfg, wd)
    final = structured.model
    pruned_row["structured"] = {
        "rate": cfg.structured_rate, "criterion": cfg.structured_criterion,
        "scope": cfg.structured_scope, "steps": structured.steps,
        "skipped": structured.skipped}
  pruned_layers = []
  if cfg.prune:
    with measure_lib.stage("prune", seconds):
      result = prune_lib.prune(final, data, cfg, wd, prep.schedule)
    final, pruned_layers = result.model, result.pruned_layers
    fits = {"best_epoch": result.fit.best_epoch, "val_accuracy": result.fit.best_val_accuracy,
            "schedule": dataclasses.asdict(result.schedule)}

  models = {"baseline": baseline}
  baseline_row.update(params=int(baseline.count_params()), macs=macs_lib.count(baseline))
  if final is not baseline:
    workdir_lib.save_keras(final, os.path.join(wd, "pruned.keras"))
    models["pruned"] = final
    outputs["pruned"] = final.predict(x_test, batch_size=512, verbose=0)
    pruned_row.update(sparsity_lib.summarize(final, pruned_layers), **fits,
                      test_accuracy=float(np.mean(np.argmax(outputs["pruned"], -1) == data.y_test)),
                      path="pruned.keras", params=int(final.count_params()),
                      macs=macs_lib.count(final))
    logging.info("Pruned test accuracy: %.4f; %d parameters (baseline %d), %.2f%% sparsity.",
                 pruned_row["test_accuracy"], pruned_row["params"], baseline_row["params"],
                 100 * pruned_row["sparsity"])
  pruned_row = pruned_row or None

  if "pruned" in models:
    plan = {"baseline": (("float32",), False), "pruned": (cfg.export_formats, cfg.prune)}
  else:
    plan = {"baseline": (tuple(dict.fromkeys(("float32",) + cfg.export_formats)), False)}
  rows = measure_lib.export_and_measure(
      models, plan, outputs, {"pruned": pruned_row["pruned_layers"]} if pruned_row else {}, data,
      os.path.join(wd, "tflite"), int8_io=cfg.int8_io, runs=cfg.benchmark_runs,
      warmup_runs=cfg.benchmark_warmup_runs, seconds=seconds)
  report = report_lib.build(
      cfg, data.summary(), baseline_row, pruned_row, rows,
      {"threads": 1, "delegate": "xnnpack", "runs": cfg.benchmark_runs,
       "rounds": measure_lib.TIMING_ROUNDS,
       "warmup_runs": cfg.benchmark_warmup_runs, "reference": tflite_lib.REFERENCE},
      seconds, wd)
  report_lib.write(report, wd)
  return report
