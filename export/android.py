"""Time .tflite files on an Android phone over adb with the user's LiteRT `benchmark_model`.

The binary and the files are pushed to a fresh folder under /data/local/tmp, each file is run
by `adb shell benchmark_model --graph=...`, its timing line is parsed, and the folder is always
removed. The files run one after another, not interleaved: a speed-up is a ratio of averages,
which a phone warming up (and slowing down) between files can bias.
"""

import dataclasses
import os
import re
import secrets
import shutil
import subprocess
from typing import List, Optional, Sequence

from absl import logging

from export import cli

DELEGATES = ("xnnpack", "gpu", "none")
REMOTE_ROOT = "/data/local/tmp"
PUSH_TIMEOUT_S = 600
RUN_TIMEOUT_S = 900  # benchmark_model stops by itself after 150 s of timed runs by default.


class SetupError(Exception):
  """adb or the phone is not ready: nothing was pushed."""


class TransferError(Exception):
  """A file could not be put on the phone."""


@dataclasses.dataclass(frozen=True)
class Timings:
  """One run of benchmark_model, in microseconds as it prints them."""
  avg_us: float  # Average over the timed runs.
  init_us: Optional[float] = None  # Interpreter creation and delegate preparation.
  first_us: Optional[float] = None  # The first warm-up run (absent from older binaries).
  warmup_avg_us: Optional[float] = None
  std_us: Optional[float] = None  # From the `count=... std=...` line of the timed runs.
  runs: Optional[int] = None  # How many timed runs (at least --num_runs, and at least 1 s).


_NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_TIMINGS = re.compile(r"(?:Average )?Inference timings in us:(.*)", re.IGNORECASE)
_FIELD = re.compile(r"([A-Za-z][A-Za-z ()]*?)\s*:\s*" + _NUMBER)
_ERROR = re.compile(r"\berror\b", re.IGNORECASE)
_COUNT = re.compile(r"\bcount=(\d+)\b.*?\bstd=" + _NUMBER)
# The inference average's label: modern, Android app / 2019 binaries, 2018 binaries.
_AVG_KEYS = ("inference (avg)", "inference", "no stats")


def parse(text: str) -> Timings:
  """Reads benchmark_model's output: the last `Inference timings in us` line.

  Takes the modern line (`Init: 2305, First inference: 9112, Warmup (avg): 8054.2,
  Inference (avg): 7941.87`) and the older `Average inference timings in us: Warmup: ...,
  Init: ..., Inference: ...` (or `no stats: ...`), after any log prefix (`INFO: `, glog's
  `I1123 12:00:00.000 123 benchmark_model.cc:123] `), with numbers in any float notation.

  Raises:
    ValueError: no such line with an inference average.
  """
  lines = text.splitlines()
  for i in range(len(lines) - 1, -1, -1):
    m = _TIMINGS.search(lines[i])
    if not m:
      continue
    fields = {k.strip().lower(): float(v) for k, v in _FIELD.findall(m.group(1))}
    avg = next((fields[k] for k in _AVG_KEYS if k in fields), None)
    if avg is None:
      continue
    counts = [c for c in map(_COUNT.search, lines[:i]) if c]
    return Timings(avg_us=avg, init_us=fields.get("init"), first_us=fields.get("first inference"),
                   warmup_avg_us=fields.get("warmup (avg)", fields.get("warmup")),
                   std_us=float(counts[-1].group(2)) if counts else None,
                   runs=int(counts[-1].group(1)) if counts else None)
  raise ValueError("no 'Inference timings in us' line with an inference average in "
                   "benchmark_model's output")


def command(binary: str, graph: str, threads: int, delegate: str, num_runs: int,
            warmup_runs: int) -> List[str]:
  """benchmark_model's command line for one file (paths on the phone).

  Raises:
    ValueError: unknown delegate.
  """
  _check_delegate(delegate)
  kernels = {"xnnpack": "--use_xnnpack=true", "none": "--use_xnnpack=false",
             "gpu": "--use_gpu=true"}
  return [binary, f"--graph={graph}", f"--num_threads={threads}", f"--num_runs={num_runs}",
          f"--warmup_runs={warmup_runs}", kernels[delegate]]


def _check_delegate(delegate: str) -> None:
  if delegate not in DELEGATES:
    raise ValueError(f"delegate={delegate}: unknown; valid: {', '.join(DELEGATES)}")


@dataclasses.dataclass(frozen=True)
class Row:
  name: str
  path: str
  bytes: int
  avg_ms: Optional[float] = None
  std_ms: Optional[float] = None
  first_ms: Optional[float] = None
  init_ms: Optional[float] = None
  runs: Optional[int] = None
  speedup: Optional[float] = None  # The first file's avg_ms over this one's: not paired.
  error: Optional[str] = None  # Why the file has no timings, in benchmark_model's words.


@dataclasses.dataclass(frozen=True)
class OnDevice:
  model: str  # ro.product.model, e.g. "Pixel 7".
  abi: str  # ro.product.cpu.abi, e.g. "arm64-v8a".
  serial: Optional[str]
  threads: int
  delegate: str
  num_runs: int
  warmup_runs: int
  rows: List[Row]


class _Adb:
  """`adb [-s SERIAL] ...` as subprocesses, output as text."""

  def __init__(self, adb: str, serial: Optional[str]):
    self.adb, self.serial = adb, serial

  def run(self, args: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess:
    """The finished command; one that runs over `timeout` seconds is killed: exit status 124."""
    cmd = [self.adb] + (["-s", self.serial] if self.serial else []) + list(args)
    try:
      return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
      return subprocess.CompletedProcess(cmd, 124, "", f"error: no answer in {timeout} s")

  def check_ready(self) -> None:
    proc = self.run(["get-state"], timeout=30)
    if proc.returncode == 0 and proc.stdout.split()[-1:] == ["device"]:
      return
    text = (proc.stderr + proc.stdout).lower()
    said = _said(proc)
    where = f"--adb_serial={self.serial}: " if self.serial else ""
    if "unauthorized" in text:
      raise SetupError(f"{where}the phone has not authorized this computer ({said}): unlock "
                       "it and accept the 'Allow USB debugging' prompt")
    if "more than one" in text:
      raise SetupError(f"several devices are connected ({said}): choose one with "
                       "--adb_serial=SERIAL (see `adb devices`)")
    if self.serial and "not found" in text:
      raise SetupError(f"--adb_serial={self.serial}: no such device ({said}); "
                       "see `adb devices`")
    raise SetupError(f"{where}no Android device ready (adb get-state: {said}): connect a phone "
                     "with USB debugging on")

  def getprop(self, name: str) -> str:
    proc = self.run(["shell", "getprop", name])
    return proc.stdout.strip() or "unknown"

  def push(self, local: str, remote: str) -> None:
    proc = self.run(["push", local, remote], timeout=PUSH_TIMEOUT_S)
    if proc.returncode != 0:
      raise TransferError(f"adb push {local} to {remote} failed: {_said(proc)}")

  def shell_ok(self, *args: str) -> None:
    proc = self.run(["shell", *args])
    if proc.returncode != 0:
      raise TransferError(f"adb shell {' '.join(args)} failed: {_said(proc)}")


def _said(proc) -> str:
  """What a command said: its first line naming an error, or else its last line.

  The first error line says why (`ERROR: Model provided has model identifier ...`); the last
  lines of a failed benchmark_model are often teardown logs.
  """
  lines = [l.strip() for l in (proc.stdout + "\n" + proc.stderr).splitlines() if l.strip()]
  return next((l for l in lines if _ERROR.search(l)), lines[-1] if lines else "(no output)")


def find_adb(adb: str) -> str:
  """The adb program's full path.

  Raises:
    SetupError: not found (the message names the --adb flag).
  """
  found = shutil.which(adb)
  if found:
    return found
  if os.sep in adb:
    raise SetupError(f"--adb={adb}: no such program; install Android platform-tools or pass "
                     "the path of adb")
  raise SetupError(f"adb not found on PATH (--adb={adb}): install Android platform-tools "
                   "(https://developer.android.com/tools/releases/platform-tools) or pass "
                   "--adb=/path/to/adb")


def measure(paths: Sequence[str], binary: str, threads: int = 1, delegate: str = "xnnpack",
            num_runs: int = 50, warmup_runs: int = 5, adb: str = "adb",
            adb_serial: Optional[str] = None) -> OnDevice:
  """Runs each file with `binary` (benchmark_model for Android) on the phone, one after another.

  Args:
    paths: .tflite files here.
    binary: the user's benchmark_model built for the phone's ABI.
    threads, delegate, num_runs, warmup_runs: benchmark_model's settings; it runs at least
      num_runs (and at least 1 s) after at least warmup_runs (and at least 0.5 s).
    adb: the adb program (a name on PATH or a path).
    adb_serial: which device (`adb -s`), needed when several are connected.

  Returns:
    The phone and one Row per file, in order; a file whose run failed or printed no timings
    has `error` set, and the others still ran.

  Raises:
    SetupError: no adb, or no single authorized device.
    TransferError: a push failed (the remote folder is removed all the same).
  """
  _check_delegate(delegate)
  phone = _Adb(find_adb(adb), adb_serial)
  phone.check_ready()
  model, abi = phone.getprop("ro.product.model"), phone.getprop("ro.product.cpu.abi")
  logging.info("Phone: %s (%s); files: %d", model, abi, len(paths))
  remote = f"{REMOTE_ROOT}/prune_{os.getpid()}_{secrets.token_hex(4)}"
  remote_binary = f"{remote}/benchmark_model"
  graphs = [f"{remote}/{i}_{re.sub(r'[^A-Za-z0-9._-]', '_', os.path.basename(p))}"
            for i, p in enumerate(paths)]
  rows = []
  try:
    phone.shell_ok("mkdir", "-p", remote)
    phone.push(binary, remote_binary)
    phone.shell_ok("chmod", "755", remote_binary)
    for path, graph in zip(paths, graphs):
      phone.push(path, graph)
    for name, path, graph in zip(cli.short_names(paths), paths, graphs):
      logging.info("Running %s on the phone", name)
      rows.append(_run_one(phone, name, path, command(remote_binary, graph, threads, delegate,
                                                     num_runs, warmup_runs)))
  finally:
    proc = phone.run(["shell", "rm", "-rf", remote])
    if proc.returncode != 0:
      logging.warning("Could not remove %s from the phone: %s", remote, _said(proc))
  ref = rows[0].avg_ms if rows else None
  rows = [dataclasses.replace(r, speedup=ref / r.avg_ms if ref and r.avg_ms else None)
          for r in rows]
  return OnDevice(model=model, abi=abi, serial=adb_serial, threads=threads, delegate=delegate,
                  num_runs=num_runs, warmup_runs=warmup_runs, rows=rows)


def _run_one(phone: _Adb, name: str, path: str, cmd: List[str]) -> Row:
  row = Row(name=name, path=path, bytes=os.path.getsize(path))
  proc = phone.run(["shell", *cmd], timeout=RUN_TIMEOUT_S)
  if proc.returncode != 0:
    return dataclasses.replace(row, error=f"benchmark_model failed (exit {proc.returncode}): "
                               f"{_said(proc)}")
  try:
    t = parse(proc.stdout + "\n" + proc.stderr)
  except ValueError:
    return dataclasses.replace(row, error=f"benchmark_model printed no timings: {_said(proc)}")
  return dataclasses.replace(row, avg_ms=t.avg_us / 1e3, std_ms=_ms(t.std_us),
                             first_ms=_ms(t.first_us), init_ms=_ms(t.init_us), runs=t.runs)


def _ms(us: Optional[float]) -> Optional[float]:
  return None if us is None else us / 1e3


def to_markdown(result: OnDevice) -> str:
  """The device line, then one table row per file."""
  delegate = {"xnnpack": "XNNPACK", "gpu": "GPU delegate", "none": "no delegate"}
  ref = result.rows[0].name if result.rows else ""
  lines = [f"Device: {result.model} ({result.abi})"
           + (f", serial {result.serial}" if result.serial else "")
           + f"; benchmark_model, {delegate[result.delegate]}, {result.threads} thread(s), "
           f"at least {result.num_runs} runs after {result.warmup_runs} warm-up runs.", "",
           f"| file | size | on-device avg ms | std ms | first inference ms | init ms | runs "
           f"| speed-up vs {ref} (ratio of averages; files run one after another, "
           "not paired) |",
           "|---|---|---|---|---|---|---|---|"]
  for r in result.rows:
    if r.error:
      lines.append(f"| {r.name} | {r.bytes:,} B | failed: {r.error} | | | | | |")
      continue
    lines.append(f"| {r.name} | {r.bytes:,} B | {r.avg_ms:.3f} | {_num(r.std_ms, '.3f')} "
                 f"| {_num(r.first_ms, '.3f')} | {_num(r.init_ms, '.1f')} | {_num(r.runs, 'd')} "
                 f"| {_num(r.speedup, '.2f')}{'x' if r.speedup else ''} |")
  return "\n".join(lines)


def _num(value, spec: str) -> str:
  return "" if value is None else format(value, spec)


SECTION_BEGIN = "<!-- on a phone: python -m export.device -->"
SECTION_END = "<!-- /on a phone -->"


def report_section(markdown: str) -> str:
  """The phone table as a section of a run's report.md, between markers that find it again."""
  return (f"{SECTION_BEGIN}\nOn a phone (`python -m export.device`):\n\n{markdown.rstrip()}\n"
          f"{SECTION_END}")


def add_to_report(report_md: str, markdown: str) -> str:
  """`report_md` with its phone section replaced by this one (appended where it has none)."""
  section = report_section(markdown)
  start, end = report_md.find(SECTION_BEGIN), report_md.find(SECTION_END)
  if start >= 0 and end > start:
    return report_md[:start] + section + report_md[end + len(SECTION_END):]
  return report_md.rstrip("\n") + "\n\n" + section + "\n"
