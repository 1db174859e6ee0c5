"""The run directory: refuse to clobber another run, write every file atomically, and replace
a previous run only once the new one has finished (a killed run never leaves a mix)."""

import ctypes
import errno
import os
import shutil
import tempfile
from typing import List, Optional, Sequence, Tuple, Union

# A directory holding this file is a run of this tool.
MARKER = "flags.txt"
# A run directory still being written holds this file (with the writer's pid).
INCOMPLETE = "INCOMPLETE"


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


def staging_path(path: str) -> str:
  """Where a run into `path` writes until it has finished: a sibling, `<path>.incomplete`."""
  return os.path.normpath(path) + ".incomplete"


def _writer_pid(staging: str) -> Optional[int]:
  """The pid of a live process writing `staging`, or None (no marker, or that process died)."""
  try:
    with open(os.path.join(staging, INCOMPLETE)) as f:
      pid = int(f.readline().split()[-1])
  except (OSError, ValueError, IndexError):
    return None
  if pid == os.getpid():
    return None
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return None
  except PermissionError:
    return pid
  try:  # A killed process nobody has reaped yet (a zombie) writes nothing.
    with open(f"/proc/{pid}/stat") as f:
      if f.read().rsplit(")", 1)[-1].split()[0] == "Z":
        return None
  except (OSError, IndexError):
    pass
  return pid


def check(path: str, overwrite: bool) -> None:
  """Raises ValueError if `path` cannot be used as the run directory; changes nothing.

  Refused: a directory that cannot be written, one that holds another run (unless
  `overwrite`), a non-empty one that is not a run of this tool (even with `overwrite`), and
  one that a live process is writing right now.
  """
  check_writable(path)
  if os.path.isdir(path) and os.listdir(path):
    if not os.path.exists(os.path.join(path, MARKER)):
      raise ValueError(f"--workdir={path}: not empty and not a run of this tool; choose another")
    if not overwrite:
      raise ValueError(f"--workdir={path}: holds another run; pass --overwrite to replace it")
  pid = _writer_pid(staging_path(path))
  if pid is not None:
    raise ValueError(f"--workdir={path}: another run (pid {pid}) is writing it in "
                     f"{staging_path(path)}; wait for it or choose another --workdir")


def recover(path: str) -> List[str]:
  """Cleans up after a run into `path` that was killed; returns what it found, for the user.

  A run killed before it finished leaves `<path>.incomplete` (removed here: `path` itself,
  the last complete run, was never touched). A run killed in the middle of the two-rename
  fallback of `finish` leaves `<path>.old`: it is put back if `path` is missing, else removed.
  """
  notes = []
  staging, old = staging_path(path), os.path.normpath(path) + ".old"
  if os.path.isdir(staging):
    kept = ("the previous complete run in it is intact" if os.path.isdir(path) and
            os.path.exists(os.path.join(path, MARKER)) else "it holds no complete run")
    notes.append(f"A previous run into {path} was interrupted before it finished; {kept}. "
                 f"Removed its partial files ({staging}).")
    shutil.rmtree(staging)
  if os.path.isdir(old):
    if os.path.isdir(path):
      shutil.rmtree(old)
    else:
      os.rename(old, path)
      notes.append(f"Restored the complete run in {path} from {old} (a run was killed while "
                   "replacing it).")
  return notes


def flag_values(text: str) -> dict:
  """{name: value} of a flags.txt: `--name=value`; booleans as absl writes them, `--name`
  (true) and `--noname` (false)."""
  values = {}
  for line in text.splitlines():
    if line.startswith("--"):
      name, eq, value = line[2:].partition("=")
      if not eq:
        name, value = (name[2:], "false") if name.startswith("no") else (name, "true")
      values[name] = value
  return values


def differing_flags(old: str, new: str, ignore: Sequence[str] = ()) -> List[str]:
  """Flags that both flags.txt texts set, to different values (`--name`), `ignore`d names
  left out. A flag only one text has (defined by a module only one process had imported when
  it wrote the text) is not compared."""
  a, b = flag_values(old), flag_values(new)
  return [f"--{n}" for n in sorted(set(a) & set(b)) if n not in ignore and a[n] != b[n]]


def resumable(path: str, flags_text: str, restart: bool, ignore: Sequence[str] = ()) -> bool:
  """Whether an interrupted run into `path` (its staging directory, no live writer) is to be
  resumed: it was started by the same flags, apart from `ignore`d ones.

  Raises:
    ValueError: it was started by other flags and `restart` is not set (one line naming them).
  """
  staging = staging_path(path)
  marker = os.path.join(staging, MARKER)
  if restart or not os.path.exists(marker) or _writer_pid(staging) is not None:
    return False
  with open(marker) as f:
    differ = differing_flags(f.read(), flags_text, ignore)
  if differ:
    raise ValueError(f"--workdir={path}: holds an interrupted run of another command (it "
                     f"differs in {', '.join(differ)}); run that command again to resume it, "
                     "or pass --restart to start over")
  return True


def begin(path: str, overwrite: bool, flags_text: Optional[str] = None, restart: bool = False,
          ignore: Sequence[str] = ()) -> Tuple[str, List[str]]:
  """Starts a run into `path`: returns (the staging directory to write, notes for the user).

  Nothing in `path` changes until `finish`; the staging directory holds an INCOMPLETE marker
  with this process's pid until then. Given `flags_text`, an interrupted run of the same flags
  is kept, for the caller to resume (see `resumable`); otherwise it is removed (`recover`).

  Raises:
    ValueError: as check() or resumable(), or the staging directory cannot be created.
  """
  check(path, overwrite)
  staging = staging_path(path)
  if flags_text is not None and resumable(path, flags_text, restart, ignore):
    notes = [f"Resuming the interrupted run in {staging} (same flags; --restart starts over)."]
  else:
    notes = recover(path)
  try:
    os.makedirs(staging, exist_ok=True)
  except OSError as e:
    raise ValueError(f"--workdir={path}: cannot be written ({e.strerror})") from None
  atomic_write(os.path.join(staging, INCOMPLETE),
               f"This run has not finished; {path} is replaced only when it has. pid {os.getpid()}\n")
  return staging, notes


def _exchange(a: str, b: str) -> bool:
  """Swaps two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
  try:
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = libc.renameat2
  except (OSError, AttributeError):
    return False
  at_fdcwd, rename_exchange = -100, 2
  if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
    return True
  err = ctypes.get_errno()
  if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
    return False
  raise OSError(err, os.strerror(err), b)


def finish(staging: str, path: str) -> str:
  """Puts the finished run in place of `path` in one step, then deletes the previous run.

  With renameat2 the two directories swap atomically; elsewhere `path` is first renamed to
  `<path>.old` (which `recover` puts back if the process dies between the two renames).
  """
  os.remove(os.path.join(staging, INCOMPLETE))
  if not os.path.exists(path):
    os.rename(staging, path)
  elif _exchange(staging, path):
    shutil.rmtree(staging)  # Now the previous run.
  else:
    old = os.path.normpath(path) + ".old"
    os.rename(path, old)
    os.rename(staging, path)
    shutil.rmtree(old)
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
