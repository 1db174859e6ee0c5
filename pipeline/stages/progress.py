"""The stage log of a run, `stages.json`: which stages finished, the files they left, what they
returned (JSON) and in which attempt, so that the same command run again after a crash
continues (pipeline/job.py). Training inside a stage resumes through tf_keras'
BackupAndRestore (pipeline/models/train.py); this log skips the stages that had finished.

The log stays in the finished run directory: `attempt` > 1 marks the stages a resumed run did.
"""

import glob
import json
import os
import time
from typing import Callable, Dict, Optional, Sequence

from export import workdir as workdir_lib
from pipeline.models import safe_load
from pipeline.models import train as train_lib

LOG = "stages.json"
# The stages that train -> their TensorBoard directories under logs/, where each fit's backup
# is (the other stages resume from their start).
TRAINING = {"baseline": "baseline", "blocks": "blocks", "structured": "structured_",
            "prune": "prune", "budget": "budget"}


class Progress:
  """The stage log in `wd`; opening it starts a new attempt."""

  def __init__(self, wd: str):
    self.wd, self.path = wd, os.path.join(wd, LOG)
    state = {"attempt": 0, "stages": {}, "running": None}
    if os.path.exists(self.path):
      with open(self.path) as f:
        state = json.load(f)
    self.attempt = state["attempt"] + 1
    self.stages: Dict[str, dict] = state["stages"]
    self.interrupted: Optional[str] = state["running"]
    self.running: Optional[str] = self.interrupted  # Until a stage starts.
    self._save()

  def resuming(self) -> Optional[str]:
    """The console's line for a resumed run ("resuming: 2 stages done, prune from epoch 3"),
    or None for a first attempt."""
    if self.attempt == 1:
      return None
    done = list(self.stages)
    head = f"resuming: {len(done)} stage{'s' if len(done) != 1 else ''} done"
    head += f" ({', '.join(done)})" if done else ""
    if not self.interrupted:
      return head
    where = "from the start"
    if self.interrupted in TRAINING:
      where = self._where_training_resumes(self.interrupted)
    return f"{head}, {self.interrupted} {where}"

  def _where_training_resumes(self, stage: str) -> str:
    """"from epoch E" of the stage's fit that was cut off (its newest backup)."""
    states = sorted(glob.glob(os.path.join(self.wd, "logs", f"{TRAINING[stage]}*", "**",
                                           train_lib.BACKUP, "keep_best.json"),
                              recursive=True), key=os.path.getmtime)
    finished = [s for s in states if train_lib.fit_finished(os.path.dirname(s))]
    if not states or states[-1] in finished:  # Between two fine-tunings (or before the first).
      return (f"from epoch 1 of its fine-tuning {len(finished) + 1}" if finished
              else "from epoch 1")
    return f"from epoch {train_lib.epochs_done(os.path.dirname(states[-1])) + 1}"

  def done(self, name: str) -> bool:
    return name in self.stages

  def result(self, name: str) -> Optional[dict]:
    """What stage `name` returned when it finished, or None if it has not."""
    entry = self.stages.get(name)
    return entry["result"] if entry else None

  def seconds(self) -> Dict[str, float]:
    """How long each finished stage took, in the attempt that ran it."""
    return {n: e["seconds"] for n, e in self.stages.items() if e.get("seconds") is not None}

  def start(self, name: str) -> None:
    self.running = name
    self._save()

  def record(self, name: str, result: Optional[dict] = None, files: Sequence[str] = (),
             seconds: Optional[float] = None) -> None:
    """Stage `name` has finished: `files` (relative to the run) are written, `result` is what
    a resumed run gets back instead of running it again."""
    self.stages[name] = {"attempt": self.attempt, "files": list(files), "result": result,
                         "seconds": seconds, "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    self.running = None
    self._save()

  def _save(self) -> None:
    workdir_lib.atomic_write(self.path, json.dumps(
        {"attempt": self.attempt, "stages": self.stages,
         "running": self.running}, indent=2) + "\n")


def load_model(path: str):
  """A model this tool saved into the run (tf_keras .keras)."""
  return safe_load.load_baseline(path, trust=True)  # Our own file, written by this run.


def model_stage(progress: Progress, name: str, wd: str, run: Callable, seconds: dict):
  """Runs `run() -> (model, result)` as stage `name`, unless it finished before: then its
  model is loaded from `<wd>/<name>.keras` and its result read from the log. The model is
  saved there when it finishes. Returns (model, result)."""
  path = os.path.join(wd, f"{name}.keras")
  if progress.done(name):
    return load_model(path), progress.result(name)
  progress.start(name)
  model, result = run()
  workdir_lib.save_keras(model, path)
  progress.record(name, result, [f"{name}.keras"], seconds.get(name))
  return model, result


def json_stage(progress: Progress, name: str, run: Callable, encode: Callable,
               decode: Callable, seconds: dict):
  """Runs `run()` as stage `name` (its value kept as `encode(value)`), unless it finished
  before: then returns `decode` of what it returned then."""
  if progress.done(name):
    return decode(progress.result(name))
  progress.start(name)
  value = run()
  progress.record(name, encode(value), (), seconds.get(name))
  return value
