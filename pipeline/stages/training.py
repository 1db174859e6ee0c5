"""The training stages of a run (baseline, sensitivity, latency plan, pruning), run under the
training strategy's scope, each read back from the run instead if it finished before
(stages.json); and the same stages on a worker other than the chief (pipeline/distribute.py).
pipeline/job.py runs them, then exports from the files they saved."""

import dataclasses
import hashlib
import os
import shutil
import tempfile
from typing import Optional

from absl import logging

from export import console as console_lib
from export import workdir as workdir_lib
from pipeline import data as data_lib
from pipeline.config import Config
from pipeline.models import distill as distill_lib
from pipeline.models import train as train_lib
from pipeline.planning import sensitivity as sensitivity_lib
from pipeline.planning import speed_target
from pipeline.stages import baseline as baseline_stage
from pipeline.stages import progress as progress_lib
from pipeline.stages import pruning


@dataclasses.dataclass(frozen=True)
class Trained:
  """What the training stages left (their models are files in the run: baseline.keras and,
  if anything was pruned, pruned.keras)."""
  fit: Optional[train_lib.FitResult]
  pruned_row: Optional[dict]
  pruned_layers: list
  digest: str = ""  # sha256 of the final model's weights: equal on every worker.
  qat: bool = False  # --quantize_aware left qat.keras, the quantization-aware copy.


def train(cfg: Config, prep, wd: str, con: console_lib.Console, seconds: dict,
          progress: progress_lib.Progress) -> Trained:
  """The training stages (under the strategy's scope): baseline, sensitivity, latency plan,
  pruning (taught by the baseline or --teacher_path with --distill). Each one that finished
  before is read back from the run, not run again. `prep` is job.Prepared."""
  data = prep.data
  baseline, fit = progress_lib.model_stage(
      progress, "baseline", wd,
      lambda: _encode_fit(*baseline_stage.stage(cfg, data, prep.baseline, prep.fresh, wd, con,
                                                seconds)),
      seconds)
  fit = train_lib.FitResult(**fit["fit"]) if fit["fit"] else None
  chosen = None
  if cfg.sensitivity or cfg.layer_rates == "auto":
    curves = progress_lib.json_stage(
        progress, "sensitivity",
        lambda: sensitivity_lib.stage(baseline, data, cfg, wd, con, seconds),
        lambda cs: [dataclasses.asdict(c) for c in cs],
        lambda ds: [sensitivity_lib.Curves(**d) for d in ds], seconds)
    if cfg.layer_rates == "auto":
      chosen = sensitivity_lib.auto_rates(baseline, curves[0], cfg)
  plan = None
  if cfg.target_speedup:
    plan = progress_lib.json_stage(
        progress, "latency", lambda: speed_target.stage(baseline, data, cfg, wd, con, seconds),
        dataclasses.asdict, lambda d: speed_target.Plan(**d), seconds)
  data = taught(cfg, data, prep.teacher or baseline)
  if cfg.teacher_path and data.teacher is not None:
    base_val = train_lib.evaluate(baseline, data.validation)
    if data.teacher.val_accuracy < base_val - 0.01:
      logging.warning("--teacher_path=%s: the teacher's validation accuracy, %.2f%%, is below "
                      "the baseline's, %.2f%%: it may teach the pruned model worse answers.",
                      cfg.teacher_path, 100 * data.teacher.val_accuracy, 100 * base_val)
  final, row, pruned_layers = pruning.run(baseline, data, cfg, wd, con, seconds,
                                          prep.schedule, plan, chosen, progress)
  if data.teacher is not None:
    row["distill"] = data.teacher.describe()
  digest = hashlib.sha256(b"".join(w.tobytes() for w in final.get_weights())).hexdigest()
  if final is baseline:
    return Trained(fit, None, [], digest)
  last = [s for s in ("blocks", "structured", "prune", "budget", "cluster")
          if progress.done(s)][-1]
  with open(os.path.join(wd, f"{last}.keras"), "rb") as f:  # pruned.keras: the user's name.
    workdir_lib.atomic_write(os.path.join(wd, "pruned.keras"), f.read())
  return Trained(fit, row, pruned_layers, digest, progress.done("qat"))


def taught(cfg: Config, data: data_lib.Dataset, teacher_model) -> data_lib.Dataset:
  """`data` with --distill's teacher (`teacher_model`: the baseline or --teacher_path's) for
  every fine-tuning on it; `data` itself without --distill."""
  if not cfg.distill:
    return dataclasses.replace(data, teacher=None)
  teacher = distill_lib.make_teacher(
      teacher_model, data, alpha=cfg.distill_alpha, temperature=cfg.distill_temperature,
      source=cfg.teacher_path or "baseline", augment=cfg.augment)
  return dataclasses.replace(data, teacher=teacher)


def _encode_fit(model, fit):
  return model, {"fit": dataclasses.asdict(fit) if fit else None}


def worker_dir(workdir: str, index: int) -> str:
  """Where worker `index` of a run into `workdir` trains: a temporary directory of its own,
  named for the run, so that a restarted worker removes what a killed one left."""
  key = hashlib.sha1(os.path.abspath(workdir).encode()).hexdigest()[:12]
  return os.path.join(tempfile.gettempdir(), f"prune-worker-{key}-{index}")


def _copy_chief(staging: str, wd: str) -> None:
  """Copies the chief's staging directory (finished stages, backups) into `wd`; files the
  chief removes meanwhile (its temporary files) are skipped."""
  try:
    shutil.copytree(staging, wd, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
        "tflite", workdir_lib.INCOMPLETE, ".tmp-*", "*.tmp*", "log.txt"))
  except shutil.Error as e:  # Each entry: (source, destination, why).
    gone = [src for src, _, why in e.args[0] if not os.path.exists(src)]
    if len(gone) < len(e.args[0]):
      raise
    logging.info("Not copied (removed while copying): %s", ", ".join(gone))


def worker(cfg: Config, prep, con, strategy, index: int) -> None:
  """Worker `index`, not the chief: the training stages, in a copy of the chief's staging
  directory (so a resumed job skips and restores exactly what the chief does), removed at
  the end (and at the start, if a killed worker left it)."""
  wd = worker_dir(cfg.workdir, index)
  staging = workdir_lib.staging_path(cfg.workdir)
  shutil.rmtree(wd, ignore_errors=True)
  os.makedirs(wd)
  try:
    if os.path.isdir(staging):
      _copy_chief(staging, wd)
    progress = progress_lib.Progress(wd)
    with strategy.scope():
      trained = train(cfg, prep, wd, con, progress.seconds(), progress)
    logging.info("Final weights sha256 %s.", trained.digest)
    con.line(f"final weights sha256 {trained.digest}")
  finally:
    shutil.rmtree(wd, ignore_errors=True)
