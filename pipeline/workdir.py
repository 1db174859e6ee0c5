"""The run directory: refuse to clobber another run, and write every file atomically."""

import os
import shutil
import tempfile
from typing import Union

# A directory holding this file is a run of this tool.
MARKER = "flags.txt"


def check_writable(path: str) -> None:
  """Raises ValueError if `path` cannot be created or written; creates nothing.

  Walks up to the nearest existing ancestor, which must be a writable directory.
  """
  probe = os.path.abspath(path)
  while not os.path.exists(probe):
    parent = os.path.dirname(probe)
    if parent == probe:
      break
    probe = parent
  if not os.path.isdir(probe):
    raise ValueError(f"--workdir={path}: cannot be written ({probe} is not a directory)")
  if not os.access(probe, os.W_OK | os.X_OK):
    raise ValueError(f"--workdir={path}: cannot be written (no write permission on {probe})")


def check(path: str, overwrite: bool) -> None:
  """Raises ValueError if `path` cannot be used as the run directory; changes nothing.

  Refused: a directory that cannot be written, one that holds another run (unless
  `overwrite`), and a non-empty one that is not a run of this tool (even with `overwrite`).
  """
  check_writable(path)
  if os.path.isdir(path) and os.listdir(path):
    if not os.path.exists(os.path.join(path, MARKER)):
      raise ValueError(f"--workdir={path}: not empty and not a run of this tool; choose another")
    if not overwrite:
      raise ValueError(f"--workdir={path}: holds another run; pass --overwrite to replace it")


def prepare(path: str, overwrite: bool) -> str:
  """Creates the run directory after check(); with `overwrite`, the previous run is removed.

  Raises:
    ValueError: as check().
  """
  check(path, overwrite)
  if os.path.isdir(path) and os.listdir(path):
    shutil.rmtree(path)
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise ValueError(f"--workdir={path}: cannot be written ({e.strerror})") from None
  return path


def atomic_write(path: str, content: Union[str, bytes]) -> str:
  """Writes to a temporary file beside `path`, then renames it into place."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  mode = "wb" if isinstance(content, bytes) else "w"
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".tmp-")
  try:
    with os.fdopen(fd, mode) as f:
      f.write(content)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return path


def save_keras(model, path: str) -> str:
  """model.save to a temporary .keras file beside `path`, then rename."""
  directory = os.path.dirname(path) or "."
  os.makedirs(directory, exist_ok=True)
  tmp = os.path.join(directory, ".tmp-" + os.path.basename(path))
  try:
    model.save(tmp)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return path
