"""Chains the stages: data, baseline, structured, prune, strip, export, gate, timing, report.

`run_job` writes into `<workdir>.incomplete` and puts it in place of `<workdir>` only when the
report is written, so a run killed at any moment leaves the previous complete run untouched.
`baseline_stage` and `pruning_stages` are shared with benchmarks/compare.py.
"""

import dataclasses
import json
import logging as py_logging
import os
import sys
from typing import Optional

from absl import logging
import numpy as np

from export import cpu as cpu_lib
from export import gates
from export import tflite as tflite_lib
from pipeline import arm_stage
from pipeline import blocks as blocks_lib
from pipeline import budget as budget_lib
from pipeline import console as console_lib
from pipeline import data as data_lib
from pipeline import keras3_stage
from pipeline import macs as macs_lib
from pipeline import measure as measure_lib
from pipeline import models as models_lib
from pipeline import patterns
from pipeline import prune as prune_lib
from pipeline import report as report_lib
from pipeline import safe_load
from pipeline import sensitivity as sensitivity_lib
from pipeline import sparsity as sparsity_lib
from pipeline import schedules as schedules_lib
from pipeline import speed_target
from pipeline import structured as structured_lib
from pipeline import train as train_lib
from pipeline import workdir as workdir_lib
from pipeline.config import Config

LOG_FILE = "log.txt"


class StageError(RuntimeError):
  """An exception escaped a stage; names the stage and where the traceback was written."""


@dataclasses.dataclass(frozen=True)
class Prepared:
  """What preflight checked: everything a bad flag could break, before anything is written."""
  data: data_lib.Dataset
  baseline: Optional[object]  # A loaded --baseline_path model, or None to train one.
  fresh: Optional[object]  # Without --baseline_path: the built, untrained model.
  schedule: Optional[prune_lib.Schedule]
  keras3: Optional[object] = None  # keras3.Agreement: how a Keras 3 baseline was carried over.


def preflight(cfg: Config) -> Prepared:
  """Loads the data and any given baseline, and checks the schedule; writes nothing.

  Raises:
    ValueError: with a one-line message naming the flag and value at fault.
  """
  if cfg.max_accuracy_drop is not None and (not cfg.prune or cfg.layer_rates):
    raise ValueError(f"--max_accuracy_drop={cfg.max_accuracy_drop:g}: raises --pruning_rate "
                     "step by step, so it needs --prune and no --layer_rates")
  schedules_lib.check_needs_prune(cfg)
  if cfg.layer_rates and not cfg.prune:
    raise ValueError(f"--layer_rates={cfg.layer_rates}: sets TF-MOT's per-layer rates, so it "
                     "needs --prune")
  if cfg.target_speedup and cfg.structured_rate > 0:
    raise ValueError(f"--target_speedup={cfg.target_speedup:g}: chooses the structured rates "
                     f"itself; leave --structured_rate (now {cfg.structured_rate:g}) at 0")
  if cfg.latency_table and not cfg.target_speedup:
    raise ValueError(f"--latency_table={cfg.latency_table}: is read only with --target_speedup")
  data = data_lib.load_dataset(cfg)
  translated, images = None, None
  if cfg.baseline_path or cfg.keras3_output:  # Real images to check Keras 3 copies on.
    images = data_lib.sample(data.validation, keras3_stage.CHECK_IMAGES, cfg.seed)[0]
  if cfg.baseline_path:
    loaded = safe_load.load(cfg.baseline_path, data.input_shape, data.num_classes,
                            trust=cfg.trust_model, images=images)
    baseline, fresh, translated = loaded.model, None, loaded.keras3
  else:
    baseline, fresh = None, models_lib.build_model(cfg, data.input_shape, data.num_classes)
  if keras3_stage.wanted(cfg, translated):
    keras3_stage.preflight(baseline or fresh, images, cfg)
  if cfg.structured_rate > 0 or cfg.target_speedup:
    structured_lib.check_criterion(baseline or fresh, cfg.structured_criterion)
  speed_target.check(baseline or fresh, cfg)
  blocks_lib.check(baseline or fresh, cfg)
  arm_stage.preflight(cfg)
  schedule = None
  if cfg.prune:
    schedules_lib.check(cfg)
    patterns.check(cfg)
    patterns.check_model(baseline or fresh, cfg)
    schedule = prune_lib.schedule_steps(cfg, len(data.train))
    if cfg.layer_rates == "auto":
      if cfg.structured_rate > 0 or cfg.target_speedup:
        flag = ("--target_speedup" if cfg.target_speedup else "--structured_rate")
        raise ValueError("--layer_rates=auto: the sensitivity curves are measured on the "
                         f"baseline, not on the model {flag} leaves; set the rates "
                         "by hand (--layer_rates=LAYER:RATE,...) with structured pruning")
      if cfg.pruning_rate > sensitivity_lib.RATES[-1]:
        raise ValueError(f"--layer_rates=auto: --pruning_rate={cfg.pruning_rate} is above the "
                         f"highest rate the sensitivity analysis measures "
                         f"({sensitivity_lib.RATES[-1]})")
    elif cfg.layer_rates:  # A bad --layer_rates fails before any training.
      prune_lib.rates_of(baseline or fresh, cfg)
  workdir_lib.check(cfg.workdir, cfg.overwrite)
  return Prepared(data, baseline, fresh, schedule, translated)


def bounds_of(cfg: Config) -> gates.Bounds:
  return gates.Bounds(float16_max_points=cfg.max_float16_accuracy_change,
                      int8_max_points=cfg.max_int8_accuracy_change)


def baseline_stage(cfg: Config, prep: Prepared, wd: str, con: console_lib.Console,
                   seconds: dict):
  """The loaded or freshly trained baseline, saved as baseline.keras; returns (model, fit)."""
  with con.stage("baseline", seconds) as info:
    if prep.baseline is not None:
      baseline, fit = prep.baseline, None
      info["summary"] = f"loaded {cfg.baseline_path}"
    else:
      baseline = prep.fresh
      fit = train_lib.train_baseline(baseline, prep.data, cfg, wd,
                                     [console_lib.epoch_bar(con, "baseline")])
      info["summary"] = (f"{cfg.model}, kept epoch {fit.best_epoch} of {cfg.epochs} "
                         f"(validation accuracy {fit.best_val_accuracy:.2%})")
    workdir_lib.save_keras(baseline, os.path.join(wd, "baseline.keras"))
  return baseline, fit


def pruning_stages(baseline, data: data_lib.Dataset, cfg: Config, wd: str,
                   con: console_lib.Console, seconds: dict,
                   schedule: Optional[prune_lib.Schedule] = None,
                   plan: Optional[speed_target.Plan] = None):
  """Structured (cfg.structured_rate, or the counts of `plan` for --target_speedup) then
  unstructured (cfg.prune) pruning of a copy.

  Returns:
    (final model, report fields about the pruning, names of the layers TF-MOT pruned).
  """
  final, row, pruned_layers = baseline, {}, []
  if cfg.remove_blocks:
    with con.stage("blocks", seconds) as info:
      final, row["blocks"] = blocks_lib.remove_blocks(baseline, data, cfg, wd,
                                                      [console_lib.epoch_bar(con, "blocks")])
      info["summary"] = (f"removed {', '.join(b['block'] for b in row['blocks']['removed'])}; "
                         f"parameters {baseline.count_params():,} -> {final.count_params():,}")
  if cfg.structured_rate > 0 or plan:
    with con.stage("structured", seconds) as info:
      structured = structured_lib.prune_structures(final, data, cfg, wd,
                                                   [console_lib.epoch_bar(con, "structured")],
                                                   counts=plan and plan.counts)
      info["summary"] = (f"{cfg.structured_criterion}, {cfg.structured_scope}: parameters "
                         f"{structured.params_before:,} -> {structured.params_after:,}, MACs "
                         f"{structured.macs_after / structured.macs_before:.2f}x")
    final = structured.model
    row["structured"] = {
        "rate": cfg.structured_rate, "criterion": cfg.structured_criterion,
        "scope": cfg.structured_scope, "steps": structured.steps,
        "skipped": structured.skipped, "fold": structured.fold,
        "channel_multiple": cfg.channel_multiple,
        "fold_reason": structured.fold_reason,
        # Reported only (nothing is chosen by it): what the structured stage alone kept.
        "test_accuracy": train_lib.evaluate(final, data.test)}
    if plan:
      row["structured"]["target"] = dataclasses.asdict(plan)
  if cfg.prune:
    with con.stage("prune", seconds) as info:
      result = prune_lib.prune(final, data, cfg, wd, schedule,
                               [console_lib.epoch_bar(con, "prune")])
      reached = sparsity_lib.summarize(result.model, result.pruned_layers)["sparsity"]
      names = result.pruned_layers
      on = (", ".join(names) if len(names) <= 6 else
            f"{len(names)} layers ({names[0]} ... {names[-1]})")
      how = {"polynomial": "TF-MOT PolynomialDecay", "constant": "TF-MOT ConstantSparsity",
             "one_shot": f"{cfg.pruning_criterion}, one-shot",
             "iterative": f"{cfg.pruning_criterion}, {cfg.iterative_rounds} iterative rounds"}
      info["summary"] = (f"{how[cfg.schedule]} to {reached:.1%} sparsity on {on}, kept epoch "
                         f"{result.fit.best_epoch or '-'}")
    final, pruned_layers = result.model, result.pruned_layers
    if cfg.max_accuracy_drop is not None:
      with con.stage("budget", seconds) as info:
        found = budget_lib.search(baseline, result, data, cfg, os.path.join(wd, "logs", "budget"),
                                  [console_lib.epoch_bar(con, "budget")])
        info["summary"] = (f"kept {found.rate:.2%} sparsity ({len(found.path) - 1} step(s)); "
                           f"{found.stopped}")
      final = found.model
      reached = sparsity_lib.layer_sparsity(found.model)  # Per layer: global_magnitude's own.
      result = dataclasses.replace(result, layer_rates={n: reached[n] for n in result.layer_rates})
      row["budget"] = {"max_drop": cfg.max_accuracy_drop, "rate": found.rate,
                       "baseline_val_accuracy": found.baseline_val_accuracy,
                       "path": found.path, "stopped": found.stopped}
    row.update(best_epoch=result.fit.best_epoch, val_accuracy=result.fit.best_val_accuracy,
               layer_rates=result.layer_rates,
               schedule=dataclasses.asdict(result.schedule))
  return final, row, pruned_layers


def _accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
  return float(np.mean(np.argmax(outputs, -1) == labels))


def run_job(cfg: Config, prep: Prepared, flags_text: str = "",
            con: Optional[console_lib.Console] = None) -> dict:
  """Runs every stage and returns the report, written with the run into cfg.workdir.

  Raises:
    ValueError: the workdir cannot be used (as workdir.check).
    StageError: a stage raised; the traceback is in the staging directory's log.txt, and the
      previous run in cfg.workdir (if any) is left as it was.
  """
  con = con or console_lib.Console(enabled=False)
  wd, notes = workdir_lib.begin(cfg.workdir, cfg.overwrite)
  handler = console_lib.log_to(os.path.join(wd, LOG_FILE))
  for note in notes:
    logging.warning("%s", note)
  try:
    report = _stages(cfg, prep, flags_text, wd, con)
  except speed_target.BadTarget as e:  # Bad input only the latency stage could tell.
    trained = os.path.join(wd, "baseline.keras")
    kept = (f" (the trained baseline is kept in {trained}: pass it as --baseline_path to try "
            "again without training)" if not cfg.baseline_path and os.path.exists(trained)
            else "")
    logging.error("%s%s", e, kept)
    raise speed_target.BadTarget(f"{e}{kept}") from None
  except Exception as e:  # pylint: disable=broad-except  (any failure: one line, log has it)
    # The traceback goes to the log file only; the console gets the one line raised below.
    handler.handle(py_logging.getLogger(__name__).makeRecord(
        __name__, py_logging.ERROR, __file__, 0, "Stage %s failed.", (con.current,),
        sys.exc_info()))
    raise StageError(f"{con.current or 'setup'} stage failed: {type(e).__name__}: "
                     f"{' '.join(str(e).split())[:300]} (traceback in "
                     f"{os.path.join(wd, LOG_FILE)}; {cfg.workdir} was not changed)") from e
  finally:
    py_logging.getLogger().removeHandler(handler)
    handler.close()
  workdir_lib.finish(wd, cfg.workdir)
  return report


def _stages(cfg: Config, prep: Prepared, flags_text: str, wd: str,
            con: console_lib.Console) -> dict:
  workdir_lib.atomic_write(os.path.join(wd, workdir_lib.MARKER), flags_text)
  workdir_lib.atomic_write(os.path.join(wd, "config.json"),
                           json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
  data, seconds = prep.data, {}
  baseline, fit = baseline_stage(cfg, prep, wd, con, seconds)
  prune_cfg = cfg
  if cfg.sensitivity or cfg.layer_rates == "auto":
    curves = sensitivity_lib.stage(baseline, data, cfg, wd, con, seconds)
    if cfg.layer_rates == "auto":
      prune_cfg = sensitivity_lib.auto_rates(baseline, curves[0], cfg)
  plan = speed_target.stage(baseline, data, cfg, wd, con, seconds) if cfg.target_speedup else None
  outputs = {"baseline": data_lib.predict(baseline, data.test)}
  baseline_row = {
      "test_accuracy": _accuracy(outputs["baseline"], data.test.labels),
      "path": "baseline.keras",
      "best_epoch": fit.best_epoch if fit else None,
      "val_accuracy": fit.best_val_accuracy if fit else None,
      "model_sparsity": sparsity_lib.summarize(baseline, [])["model_sparsity"],
      "params": int(baseline.count_params()), "macs": macs_lib.count(baseline),
      "keras3": dataclasses.asdict(prep.keras3) if prep.keras3 else None,
  }
  logging.info("Baseline test accuracy: %.4f", baseline_row["test_accuracy"])

  final, pruned_row, pruned_layers = pruning_stages(baseline, data, prune_cfg, wd, con, seconds,
                                                    prep.schedule, plan)
  models = {"baseline": baseline}
  if final is not baseline:
    workdir_lib.save_keras(final, os.path.join(wd, "pruned.keras"))
    models["pruned"] = final
    outputs["pruned"] = data_lib.predict(final, data.test)
    pruned_row.update(sparsity_lib.summarize(final, pruned_layers),
                      test_accuracy=_accuracy(outputs["pruned"], data.test.labels),
                      path="pruned.keras", params=int(final.count_params()),
                      macs=macs_lib.count(final))
    logging.info("Pruned test accuracy: %.4f; %d parameters (baseline %d), %.2f%% sparsity.",
                 pruned_row["test_accuracy"], pruned_row["params"], baseline_row["params"],
                 100 * pruned_row["sparsity"])
    plan = {"baseline": (("float32",), False), "pruned": (cfg.export_formats, cfg.prune)}
  else:
    pruned_row = None
    plan = {"baseline": (tuple(dict.fromkeys(("float32",) + cfg.export_formats)), False)}

  rows = measure_lib.export_and_measure(
      models, plan, outputs, {"pruned": pruned_layers} if pruned_row else {}, data,
      os.path.join(wd, "tflite"), int8_io=cfg.int8_io, runs=cfg.benchmark_runs,
      warmup_runs=cfg.benchmark_warmup_runs, bounds=bounds_of(cfg), console=con,
      seconds=seconds)
  if pruned_row and (cfg.sparsity_m_by_n or cfg.block_size):
    pruned_row["pattern"] = patterns.check_rows(rows, pruned_layers, cfg)
  if pruned_row:
    pruned_row["xnnpack_sparse_graph"] = dict(zip(("qualifies", "reason"),
                                                  patterns.qualifies(final)))
  arm = arm_stage.stage(rows, data, cfg, con, seconds) if cfg.arm_check else None
  keras3_out = (keras3_stage.stage(final, "pruned" if pruned_row else "baseline", data, cfg, wd,
                                   con, seconds) if keras3_stage.wanted(cfg, prep.keras3)
                else None)
  with con.stage("report", seconds) as info:
    report = report_lib.build(
        cfg, data.summary(), baseline_row, pruned_row, rows,
        {"threads": 1, "delegate": "xnnpack", "runs": cfg.benchmark_runs,
         "rounds": measure_lib.TIMING_ROUNDS, "warmup_runs": cfg.benchmark_warmup_runs,
         "reference": tflite_lib.REFERENCE, "cpu": dataclasses.asdict(cpu_lib.read()),
         "cpu_description": cpu_lib.read().describe()},
        seconds, wd, arm, keras3_out)
    report_lib.write(report, wd)
    info["summary"] = f"{cfg.workdir}/report.md"
  return report
