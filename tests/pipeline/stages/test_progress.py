"""Tests for pipeline/stages/progress.py: the stage log that lets a killed run resume."""

import json
import os

from pipeline.stages import progress as progress_lib


def test_a_finished_stage_is_not_run_again_and_the_log_says_where_a_run_resumes(tmp_path):
  wd = str(tmp_path)
  calls = []
  log = progress_lib.Progress(wd)
  assert log.attempt == 1 and log.resuming() is None
  got = progress_lib.json_stage(log, "sensitivity", lambda: calls.append(1) or [0.5], list,
                                tuple, {"sensitivity": 2.0})
  assert got == [0.5] and calls == [1]
  log.start("prune")  # Killed during its third epoch: two epochs backed up.
  state = tmp_path / "logs" / "prune" / "backup"
  state.mkdir(parents=True)
  (state / "keep_best.json").write_text(json.dumps({"logs": [{}, {}], "finished": False}))

  again = progress_lib.Progress(wd)
  assert again.attempt == 2
  assert again.resuming() == "resuming: 1 stage done (sensitivity), prune from epoch 3"
  got = progress_lib.json_stage(again, "sensitivity", lambda: calls.append(1) or [0.9], list,
                                tuple, {})
  assert got == (0.5,) and calls == [1]  # Read back, decoded; not run.
  assert again.seconds() == {"sensitivity": 2.0}
  entry = json.load(open(os.path.join(wd, progress_lib.LOG)))["stages"]["sensitivity"]
  assert entry["attempt"] == 1 and entry["result"] == [0.5]


def test_a_stage_that_does_not_train_resumes_from_its_start(tmp_path):
  log = progress_lib.Progress(str(tmp_path))
  log.record("baseline", {"fit": None}, ["baseline.keras"])
  log.start("export")
  assert progress_lib.Progress(str(tmp_path)).resuming() == (
      "resuming: 1 stage done (baseline), export from the start")
