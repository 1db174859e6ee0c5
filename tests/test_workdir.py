"""Tests for pipeline/workdir.py: never clobber a run, never leave a half-written file."""

import os

import pytest

from pipeline import workdir


def test_prepare_refuses_another_run_unless_overwrite(tmp_path):
  run = tmp_path / "run"
  workdir.prepare(str(run), overwrite=False)
  (run / workdir.MARKER).write_text("--epochs=1\n")
  (run / "report.json").write_text("{}")
  with pytest.raises(ValueError) as e:
    workdir.prepare(str(run), overwrite=False)
  assert str(e.value) == f"--workdir={run}: holds another run; pass --overwrite to replace it"
  workdir.prepare(str(run), overwrite=True)
  assert os.listdir(run) == []


def test_prepare_never_deletes_a_directory_that_is_not_a_run(tmp_path):
  (tmp_path / "precious.txt").write_text("keep me")
  with pytest.raises(ValueError, match="not empty and not a run of this tool"):
    workdir.prepare(str(tmp_path), overwrite=True)
  assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_unwritable_workdir_is_refused_without_creating_anything(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("")
  target = blocker / "sub" / "run"
  with pytest.raises(ValueError) as e:
    workdir.check_writable(str(target))
  assert str(e.value) == f"--workdir={target}: cannot be written ({blocker} is not a directory)"
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
