"""--strategy: which tf.distribute strategy trains, this process's place in the cluster, and how
each worker reads its share of the data.

`cluster(strategy)` reads TF_CONFIG without TensorFlow, so a malformed one is one line before
anything loads; `make(cluster)` builds the strategy (for multi_worker it must be built before
TensorFlow runs anything else). Only the chief writes the run directory and exports; the other
workers train in lockstep and write to a temporary copy of the run (pipeline/job.py).
"""

import dataclasses
import json
import os

from pipeline.config import FlagError

ENV = "TF_CONFIG"


@dataclasses.dataclass(frozen=True)
class Cluster:
  """Where this process sits: `workers` processes train together; task (type, index)."""
  strategy: str = "one_device"
  workers: int = 1
  task_type: str = "worker"
  task_index: int = 0
  has_chief_task: bool = False  # A "chief" task in the cluster (else worker 0 is chief).

  @property
  def is_chief(self) -> bool:
    """The chief writes the run: the "chief" task, else worker 0 (TensorFlow's own rule)."""
    return self.task_type == "chief" or (self.task_type == "worker" and self.task_index == 0
                                         and not self.has_chief_task)

  def describe(self, batch_size: int, shard_by: str, replicas: int) -> dict:
    """The report's "training" section: workers, replicas, per-replica batch, sharding."""
    return {"strategy": self.strategy, "workers": self.workers, "replicas": replicas,
            "global_batch": batch_size, "per_replica_batch": batch_size // max(1, replicas),
            "sharding": (f"by {shard_by}" if self.workers > 1 else "none (one worker)")}


def _bad(why: str):
  return FlagError("strategy", "multi_worker", f"{ENV} {why}")


def cluster(strategy: str, environ=None) -> Cluster:
  """This process's Cluster for --strategy.

  Raises:
    config.FlagError: --strategy=multi_worker without a usable TF_CONFIG: unset, not JSON, no
      cluster or task, a task not in the cluster, an index out of range, no chief.
  """
  environ = os.environ if environ is None else environ
  if strategy != "multi_worker":
    return Cluster(strategy)
  text = environ.get(ENV, "")
  if not text.strip():
    raise _bad("is not set: it names the cluster's workers and this one's task, e.g. "
               '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}} (python -m pipeline.launch sets it)')
  try:
    config = json.loads(text)
  except ValueError as e:
    raise _bad(f"is not JSON ({e})") from None
  if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict):
    raise _bad('has no "cluster" (a JSON object of task type -> list of "host:port")')
  tasks = {k: v for k, v in config["cluster"].items() if k in ("chief", "worker")}
  if not any(tasks.values()):
    raise _bad('names no chief: its "cluster" has no "chief" or "worker" tasks')
  if not all(isinstance(v, list) for v in tasks.values()):
    raise _bad('lists of "host:port" expected for "chief" and "worker"')
  if len(tasks.get("chief", [])) > 1:
    raise _bad(f'names {len(tasks["chief"])} chiefs; a cluster has at most one')
  task = config.get("task")
  if not isinstance(task, dict) or "type" not in task:
    raise _bad('has no "task" ({"type": "worker", "index": N}: which one this process is)')
  kind, index = task["type"], task.get("index", 0)
  if kind not in tasks:
    raise _bad(f'task type "{kind}" is not in its cluster ({", ".join(sorted(tasks))})')
  if not isinstance(index, int) or not 0 <= index < len(tasks[kind]):
    raise _bad(f'task index {index} is out of range: the cluster has {len(tasks[kind])} '
               f'"{kind}" task(s), indices 0..{len(tasks[kind]) - 1}')
  return Cluster("multi_worker", sum(len(v) for v in tasks.values()), kind, index,
                 has_chief_task=bool(tasks.get("chief")))


def make(c: Cluster):
  """The tf.distribute strategy for `c` (TensorFlow is imported here)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if c.strategy == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  if c.strategy == "mirrored":
    return tf.distribute.MirroredStrategy()
  return tf.distribute.get_strategy()  # The default: this process, one device.
