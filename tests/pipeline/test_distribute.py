"""Tests for pipeline/distribute.py: TF_CONFIG read without TensorFlow, who is chief."""

import json

import pytest

from conftest import assert_message
from pipeline import distribute


def _env(cluster, task):
  return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": task})}


def test_one_device_and_mirrored_ignore_tf_config():
  c = distribute.cluster("mirrored", {"TF_CONFIG": "not json"})
  assert (c.strategy, c.workers, c.is_chief) == ("mirrored", 1, True)


def test_worker_0_is_chief_unless_the_cluster_has_a_chief_task():
  workers = {"worker": ["a:1", "b:2"]}
  assert distribute.cluster("multi_worker", _env(workers, {"type": "worker", "index": 0})).is_chief
  c = distribute.cluster("multi_worker", _env(workers, {"type": "worker", "index": 1}))
  assert (c.workers, c.task_index, c.is_chief) == (2, 1, False)
  with_chief = {"chief": ["c:0"], "worker": ["a:1"]}
  assert distribute.cluster("multi_worker", _env(with_chief, {"type": "chief", "index": 0})).is_chief
  c = distribute.cluster("multi_worker", _env(with_chief, {"type": "worker", "index": 0}))
  assert (c.workers, c.is_chief) == (2, False)


def test_describe_divides_the_global_batch_by_the_replicas():
  c = distribute.Cluster("multi_worker", 2, "worker", 0)
  assert c.describe(128, "data", 4) == {
      "strategy": "multi_worker", "workers": 2, "replicas": 4, "global_batch": 128,
      "per_replica_batch": 32, "sharding": "by data"}


@pytest.mark.parametrize("env,why", [
    ({}, "TF_CONFIG is not set"),
    ({"TF_CONFIG": '{"task": {"type": "worker"}}'}, 'TF_CONFIG has no "cluster"'),
    (_env({"worker": ["a:1"]}, {"index": 0}), 'TF_CONFIG has no "task"'),
    (_env({"worker": ["a:1"]}, {"type": "chief", "index": 0}),
     'TF_CONFIG task type "chief" is not in its cluster (worker)'),
    (_env({"chief": ["a:1", "b:2"]}, {"type": "chief", "index": 0}), "TF_CONFIG names 2 chiefs"),
])
def test_bad_tf_config_names_the_flag_and_what_is_wrong(env, why):
  with pytest.raises(ValueError) as e:
    distribute.cluster("multi_worker", env)
  assert_message(str(e.value), f"--strategy=multi_worker: {why}")
