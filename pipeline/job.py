"""Chains the stages: data, baseline, structured, prune, strip, export, gate, timing, report.

`run_job` writes into `<workdir>.incomplete` and puts it in place of `<workdir>` only when the
report is written, so a run killed at any moment leaves the previous complete run untouched.
The stages themselves live in pipeline/stages/ (training [baseline, pruning], measure, arm,
keras3), and stages.json (stages/progress.py) lets the same command resume a killed run.
"""

import dataclasses
import json
import logging as py_logging
import os
import sys
from typing import Optional

from absl import logging

from export import console as console_lib
from export import cpu as cpu_lib
from export import formats
from export import gates
from export.head import Head
from export import verify as verify_lib
from export import timing as timing_lib
from export import workdir as workdir_lib
from pipeline import data as data_lib
from pipeline import distribute
from pipeline import report as report_lib
from pipeline import rules
from pipeline import config as config_lib
from pipeline.config import Config
from pipeline.collab import cluster as cluster_lib
from pipeline.collab import qat as qat_lib
from pipeline.models import architectures as models_lib
from pipeline.models import distill as distill_lib
from pipeline.models import heads
from pipeline.models import macs as macs_lib
from pipeline.models import safe_load
from pipeline.models import train as train_lib
from pipeline.planning import layer_rates
from pipeline.planning import speed_target
from pipeline.stages import arm as arm_stage
from pipeline.stages import baseline as baseline_stage
from pipeline.stages import keras3 as keras3_stage
from pipeline.stages import measure as measure_lib
from pipeline.stages import progress as progress_lib
from pipeline.stages import training
from pipeline.structured import blocks as blocks_lib
from pipeline.structured import prune as structured_lib
from pipeline.unstructured import patterns
from pipeline.unstructured import prune as prune_lib
from pipeline.models import sparsity as sparsity_lib

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
  teacher: Optional[object] = None  # A loaded --teacher_path model (--distill), or None.
  head: Head = Head()  # What the model outputs (pipeline/models/heads.py).
  head_check: str = ""  # What its outputs on validation images said against it ("" if fine).


def preflight(cfg: Config, check_workdir: bool = True, data: Optional[data_lib.Dataset] = None,
              model=None, model_name: str = "") -> Prepared:
  """Loads the data and any given baseline, and checks the schedule; writes nothing. Run it
  under the training strategy's scope (a fresh model's variables are created here).

  Args:
    cfg: the run's configuration.
    check_workdir: also check that cfg.workdir can be written.
    data, model: the Python API's objects, in place of --dataset and --baseline_path.
    model_name: how errors name `model`.

  Raises:
    ValueError: with a one-line message naming the flag and value at fault.
  """
  rules.check(cfg)  # Again, for callers that build their own Config (a sweep's points).
  name = model_name or f"--baseline_path={cfg.baseline_path}"
  if model is None and cfg.baseline_path:
    model = safe_load.open_file(cfg.baseline_path, cfg.trust_model, name)
  if model is not None:
    safe_load.head_of(model, name)  # An unreadable head: one line, before the data loads.
  data = data or data_lib.load_dataset(cfg)
  translated, images = None, None
  if model is not None or cfg.keras3_output or cfg.teacher_path:  # To check Keras 3 copies.
    images = data_lib.sample(data.validation, keras3_stage.CHECK_IMAGES, cfg.seed)[0]
  if model is not None:
    loaded = safe_load.adopt(model, name, data.input_shape, data.num_classes, cfg.trust_model,
                             images)
    baseline, fresh, translated = loaded.model, None, loaded.keras3
  else:
    baseline, fresh = None, models_lib.build_model(cfg, data.input_shape, data.num_classes)
  head = heads.read(baseline or fresh)
  head_check = heads.check_outputs(head, (baseline or fresh).predict(images, verbose=0)) if (
      baseline is not None) else ""
  if head_check:
    logging.warning("%s: %s", name, head_check)
  teacher = _teacher(cfg, data, images)
  if keras3_stage.wanted(cfg, translated):
    keras3_stage.preflight(baseline or fresh, images, cfg)
  _check_model(cfg, baseline or fresh)
  schedule = prune_lib.schedule_steps(cfg, len(data.train)) if cfg.prune else None
  if check_workdir:
    workdir_lib.check(cfg.workdir, cfg.overwrite)
  return Prepared(data, baseline, fresh, schedule, translated, teacher, head, head_check or "")


def _teacher(cfg: Config, data: data_lib.Dataset, images):
  """The --teacher_path model, loaded and checked (its head read, its classes the data's)."""
  if not cfg.teacher_path:
    return None
  teacher = safe_load.load(cfg.teacher_path, data.input_shape, data.num_classes,
                           trust=cfg.trust_model, images=images, flag_name="teacher_path").model
  distill_lib.check_teacher(teacher, images, cfg.teacher_path, data.num_classes)
  return teacher


def _check_model(cfg: Config, model) -> None:
  """What the pruning flags ask of the model's layers, before any training."""
  if cfg.structured_rate > 0 or cfg.target_speedup:
    structured_lib.check_criterion(model, cfg.structured_criterion)
  speed_target.check(model, cfg)
  blocks_lib.check(model, cfg)
  cluster_lib.check(model, cfg)
  arm_stage.preflight(cfg)
  if cfg.prune:
    patterns.check_model(model, cfg)
    if cfg.layer_rates != "auto":  # A bad --layer_rates fails before any training.
      layer_rates.for_model(model, cfg)


def describe_data(data: data_lib.Dataset) -> str:
  """The data stage's console line: source, split sizes, image shape, classes."""
  d = data.summary()
  return (f"{d['name']} from {d['source']}: {d['train_examples']:,} train, "
          f"{d['validation_examples']:,} validation, {d['test_examples']:,} test, "
          f"{'x'.join(map(str, d['image_shape']))}, {len(d['classes'])} classes")


def bounds_of(cfg: Config) -> gates.Bounds:
  return gates.Bounds(float16_max_points=cfg.max_float16_accuracy_change,
                      int8_max_points=cfg.max_int8_accuracy_change)


def run_job(cfg: Config, prep: Prepared, flags_text: str = "",
            con: Optional[console_lib.Console] = None,
            cluster: distribute.Cluster = distribute.Cluster(), strategy=None) -> Optional[dict]:
  """Runs every stage and returns the report, written with the run into cfg.workdir.

  The run is written in a staging directory first; run again with the same `flags_text` after
  a crash, it resumes there (stages.json says which stages had finished). Under a
  multi-worker `cluster`, a worker other than the chief trains in lockstep in a temporary copy
  of that directory, writes nothing else, and returns None.

  Raises:
    ValueError: the workdir cannot be used (as workdir.check), or holds an interrupted run of
      other flags (without --restart).
    StageError: a stage raised; the traceback is in the staging directory's log.txt, and the
      previous run in cfg.workdir (if any) is left as it was.
  """
  con = con or console_lib.Console(enabled=False)
  strategy = strategy or distribute.make(cluster)
  if not cluster.is_chief:
    training.worker(cfg, prep, con, strategy, cluster.task_index)
    return None
  wd, notes = workdir_lib.begin(cfg.workdir, cfg.overwrite, flags_text, cfg.restart,
                                config_lib.RESUME_MAY_DIFFER)
  handler = console_lib.log_to(os.path.join(wd, LOG_FILE))
  for note in notes:
    logging.warning("%s", note)
  try:
    report = _stages(cfg, prep, flags_text, wd, con, strategy, cluster)
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
                     f"{os.path.join(wd, LOG_FILE)}; {cfg.workdir} was not changed; the same "
                     "command resumes it)") from e
  finally:
    py_logging.getLogger().removeHandler(handler)
    handler.close()
  train_lib.remove_backups(wd)
  workdir_lib.finish(wd, cfg.workdir)
  return report


def _stages(cfg: Config, prep: Prepared, flags_text: str, wd: str,
            con: console_lib.Console, strategy, cluster: distribute.Cluster) -> dict:
  progress = progress_lib.Progress(wd)
  resuming = progress.resuming()
  if resuming:
    con.line(resuming)
    logging.info("%s", resuming)
  workdir_lib.atomic_write(os.path.join(wd, workdir_lib.MARKER), flags_text)
  workdir_lib.atomic_write(os.path.join(wd, "config.json"),
                           json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
  data, seconds = prep.data, progress.seconds()
  with strategy.scope():
    trained = training.train(cfg, prep, wd, con, seconds, progress)
  models, outputs, baseline_row, pruned_row = _trained_models(cfg, prep, trained, wd, strategy,
                                                              cluster)
  final = models.get("pruned", models["baseline"])
  pruned_layers = trained.pruned_layers
  progress.start("export")  # Export and what follows run again in a resumed run.
  rows = measure_lib.export_and_measure(
      models, _export_plan(cfg, pruned_row is not None, "qat" in models), outputs,
      {"pruned": pruned_layers, "qat": qat_lib.wrapped_names(pruned_layers)} if pruned_row
      else {}, data, os.path.join(wd, "tflite"), head=prep.head, int8_io=cfg.int8_io,
      runs=cfg.benchmark_runs, warmup_runs=cfg.benchmark_warmup_runs, bounds=bounds_of(cfg),
      console=con, seconds=seconds)
  if pruned_row:
    if cfg.sparsity_m_by_n or cfg.block_size:
      pruned_row["pattern"] = measure_lib.check_patterns(rows, pruned_layers, cfg)
    pruned_row["xnnpack_sparse_graph"] = dict(zip(("qualifies", "reason"),
                                                  patterns.qualifies(final)))
  arm = arm_stage.stage(rows, data, cfg, con, seconds, prep.head) if cfg.arm_check else None
  keras3_out = (keras3_stage.stage(final, "pruned" if pruned_row else "baseline", data, cfg, wd,
                                   con, seconds) if keras3_stage.wanted(cfg, prep.keras3)
                else None)
  with con.stage("report", seconds) as info:
    report = report_lib.build(cfg, data.summary(), baseline_row, pruned_row, rows,
                              _benchmark_settings(cfg), seconds, wd, arm, keras3_out)
    report_lib.write(report, wd)
    info["summary"] = f"{cfg.workdir}/report.md"
  return report


def _trained_models(cfg: Config, prep: Prepared, trained, wd: str, strategy,
                    cluster: distribute.Cluster):
  """({name: model}, {name: test outputs}, baseline row, pruned row or None): the models the
  training stages saved (baseline, pruned, the quantization-aware copy), loaded outside any
  strategy as plain models, with their report rows."""
  data = prep.data
  models = {"baseline": progress_lib.load_model(os.path.join(wd, "baseline.keras"))}
  outputs = {"baseline": data_lib.predict(models["baseline"], data.test)}
  baseline_row = baseline_stage.row(models["baseline"], trained.fit, outputs["baseline"], data,
                                    prep, cfg)
  baseline_row["training"] = dict(
      cluster.describe(cfg.batch_size, data.train.shard_by, strategy.num_replicas_in_sync),
      final_weights_sha256=trained.digest)
  if trained.pruned_row is None:
    return models, outputs, baseline_row, None
  models["pruned"] = progress_lib.load_model(os.path.join(wd, "pruned.keras"))
  if trained.qat:  # Rebuilt from the float model it was fine-tuned from, and its weights.
    models["qat"] = qat_lib.load(models["pruned"], os.path.join(wd, qat_lib.WEIGHTS),
                                 bool(trained.pruned_layers), bool(cfg.cluster))
  for name in ("pruned", "qat") if trained.qat else ("pruned",):
    outputs[name] = data_lib.predict(models[name], data.test)
  pruned_row = _pruned_row(models["pruned"], trained.pruned_row, trained.pruned_layers,
                           outputs["pruned"], data, prep.head)
  if trained.qat:
    pruned_row["qat"]["test_accuracy"] = verify_lib.top1_accuracy(outputs["qat"],
                                                                  data.test.labels, prep.head)
  return models, outputs, baseline_row, pruned_row


def _pruned_row(model, fields: dict, pruned_layers, outputs, data, head: Head) -> dict:
  """The report's pruned row: the pruning stages' fields, sparsity, accuracy, size (the model
  is wd/pruned.keras)."""
  row = dict(fields, **sparsity_lib.summarize(model, pruned_layers),
             test_accuracy=verify_lib.top1_accuracy(outputs, data.test.labels, head),
             path="pruned.keras", params=int(model.count_params()), macs=macs_lib.count(model))
  logging.info("Pruned test accuracy: %.4f; %d parameters, %.2f%% sparsity.",
               row["test_accuracy"], row["params"], 100 * row["sparsity"])
  return row


def _export_plan(cfg: Config, pruned: bool, qat: bool = False) -> dict:
  """{model: (formats, also sparse-encoded)}: the baseline as float32 (the reference) and the
  pruned model in every --export_formats (and its quantization-aware copy as int8, beside the
  post-training int8 file); the baseline in all of them when nothing is pruned."""
  if pruned:
    plan = {"baseline": (("float32",), False), "pruned": (cfg.export_formats, cfg.prune)}
    return dict(plan, qat=(("int8",), cfg.prune)) if qat else plan
  return {"baseline": (tuple(dict.fromkeys(("float32",) + cfg.export_formats)), False)}


def _benchmark_settings(cfg: Config) -> dict:
  machine = cpu_lib.read()
  return {"threads": 1, "delegate": "xnnpack",
          "runs": timing_lib.invokes(cfg.benchmark_runs, measure_lib.TIMING_ROUNDS),
          "rounds": measure_lib.TIMING_ROUNDS, "warmup_runs": cfg.benchmark_warmup_runs,
          "reference": formats.REFERENCE, "cpu": dataclasses.asdict(machine),
          "cpu_description": machine.describe()}
