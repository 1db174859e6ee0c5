"""Tests for export/workdir.py: never clobber a run, never leave a half-written file."""

import os

import pytest

from conftest import assert_message
from export import workdir


def _complete_run(path, content="old"):
  staging, _ = workdir.begin(str(path), overwrite=True)
  with open(os.path.join(staging, workdir.MARKER), "w") as f:
    f.write("--epochs=1\n")
  with open(os.path.join(staging, "report.json"), "w") as f:
    f.write(content)
  return workdir.finish(staging, str(path))


def test_a_run_is_written_beside_the_old_one_and_swapped_in_when_finished(tmp_path):
  run = tmp_path / "run"
  _complete_run(run, "old")
  with pytest.raises(ValueError) as e:
    workdir.begin(str(run), overwrite=False)
  assert_message(str(e.value), f"--workdir={run}:", "another run", "--overwrite")
  staging, notes = workdir.begin(str(run), overwrite=True)
  assert staging == f"{run}.incomplete" and notes == []
  assert (run / "report.json").read_text() == "old"  # Untouched while the new run works.
  assert "has not finished" in open(os.path.join(staging, workdir.INCOMPLETE)).read()
  (tmp_path / "run.incomplete" / workdir.MARKER).write_text("--epochs=2\n")
  (tmp_path / "run.incomplete" / "report.json").write_text("new")
  workdir.finish(staging, str(run))
  assert (run / "report.json").read_text() == "new"
  assert sorted(os.listdir(run)) == [workdir.MARKER, "report.json"]  # No INCOMPLETE marker.
  assert sorted(os.listdir(tmp_path)) == ["run"]  # The old run is gone, nothing else left.


def test_an_interrupted_run_leaves_the_old_one_and_the_next_run_says_so(tmp_path):
  run = tmp_path / "run"
  _complete_run(run, "old")
  workdir.begin(str(run), overwrite=True)  # Never finished: as if killed.
  os.remove(tmp_path / "run.incomplete" / workdir.INCOMPLETE)
  (tmp_path / "run.incomplete" / workdir.INCOMPLETE).write_text("pid 999999999\n")  # Dead.
  assert (run / "report.json").read_text() == "old"
  staging, notes = workdir.begin(str(run), overwrite=True)
  assert notes == [f"A previous run into {run} was interrupted before it finished; the previous "
                   f"complete run in it is intact. Removed its partial files ({run}.incomplete)."]
  assert os.listdir(staging) == [workdir.INCOMPLETE]


def test_a_run_being_written_by_a_live_process_is_refused(tmp_path):
  run = tmp_path / "run"
  (tmp_path / "run.incomplete").mkdir()
  (tmp_path / "run.incomplete" / workdir.INCOMPLETE).write_text(f"pid {os.getppid()}\n")
  with pytest.raises(ValueError) as e:
    workdir.check(str(run), overwrite=True)
  assert_message(str(e.value), f"--workdir={run}:", f"pid {os.getppid()}", f"{run}.incomplete")


def test_recover_puts_back_a_run_caught_between_the_fallback_renames(tmp_path):
  run = tmp_path / "run"
  _complete_run(run, "old")
  os.rename(run, tmp_path / "run.old")  # Killed after the first rename of the fallback.
  assert workdir.recover(str(run)) == [
      f"Restored the complete run in {run} from {run}.old (a run was killed while replacing it)."]
  assert (run / "report.json").read_text() == "old"


def test_never_deletes_a_directory_that_is_not_a_run(tmp_path):
  (tmp_path / "precious.txt").write_text("keep me")
  with pytest.raises(ValueError, match="not empty and not a run of this tool"):
    workdir.begin(str(tmp_path), overwrite=True)
  assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_unwritable_workdir_is_refused_without_creating_anything(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("")
  target = blocker / "sub" / "run"
  with pytest.raises(ValueError) as e:
    workdir.check_writable(str(target))
  assert_message(str(e.value), f"--workdir={target}:", f"{blocker} is not a directory")
  assert sorted(os.listdir(tmp_path)) == ["file"]


def test_atomic_write_leaves_old_file_whole_on_failure(tmp_path):
  path = tmp_path / "report.json"
  workdir.atomic_write(str(path), "old")

  with pytest.raises(TypeError):
    workdir.atomic_write(str(path), 12345)  # Not str or bytes: the write fails midway.
  assert path.read_text() == "old"
  assert sorted(os.listdir(tmp_path)) == ["report.json"]  # No temp file left behind.
  workdir.atomic_write(str(path), b"new")
  assert path.read_bytes() == b"new"


def test_differing_flags_names_what_changed_and_leaves_out_the_ignored():
  old = "--epochs=2\n--seed=0\n--prune\n--overwrite\n--norestart\n--only_here=1\n"
  new = "--epochs=3\n--seed=0\n--noprune\n--nooverwrite\n--restart\n"
  assert workdir.differing_flags(old, new, ignore=("overwrite", "restart")) == [
      "--epochs", "--prune"]


def test_an_interrupted_run_is_resumed_by_the_same_flags_refused_by_others_unless_restart(
    tmp_path):
  run = str(tmp_path / "run")
  staging, _ = workdir.begin(run, overwrite=False, flags_text="--epochs=2\n")
  (tmp_path / "run.incomplete" / workdir.MARKER).write_text("--epochs=2\n")
  (tmp_path / "run.incomplete" / "baseline.keras").write_text("kept")
  (tmp_path / "run.incomplete" / workdir.INCOMPLETE).write_text("pid 999999999\n")  # Died.
  with pytest.raises(ValueError) as e:
    workdir.begin(run, overwrite=False, flags_text="--epochs=3\n")
  assert_message(str(e.value), f"--workdir={run}: holds an interrupted run of another command",
                 "differs in --epochs", "--restart")
  again, notes = workdir.begin(run, overwrite=False, flags_text="--epochs=2\n--restart\n",
                               ignore=("restart",))
  assert again == staging and notes[0].startswith("Resuming the interrupted run in")
  assert (tmp_path / "run.incomplete" / "baseline.keras").read_text() == "kept"
  (tmp_path / "run.incomplete" / workdir.INCOMPLETE).write_text("pid 999999999\n")
  _, notes = workdir.begin(run, overwrite=False, flags_text="--epochs=3\n", restart=True)
  assert "was interrupted" in notes[0]
  assert not (tmp_path / "run.incomplete" / "baseline.keras").exists()  # Started over.
