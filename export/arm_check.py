"""The ARM check: .tflite files run on the emulated arm64 LiteRT (export/emulator.py) and on
x86 with the same images. Per file: does XNNPACK prepare it on arm64 (the exact error if not),
are its outputs those of x86 (the same top-1 class on every image; float32 within the x86
gate's 1e-4), and its emulated
time against the dense reference's, paired as export/timing.py pairs (interleaved rounds in
one emulated process). export/arm_guest.py is the half that runs inside the emulator.
"""

import dataclasses
import json
import os
import subprocess
import tempfile
import threading
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from export import emulator
from export import head as head_lib
from export import litert
from export import timing as timing_lib


@dataclasses.dataclass(frozen=True)
class Result:
  name: str
  format: str
  prepares: bool  # XNNPACK prepared the file on arm64.
  error: str  # Why not (XNNPACK's words), when it did not.
  max_abs_diff: float  # Against the x86 outputs of the same file on the same images.
  agreement: float  # Fraction of those images with the same top-1 class as on x86.
  outside: Optional[str]  # Why the outputs are outside the format's bound, else None.
  emulated_ms: Optional[float]  # Median emulated time per invoke (None: not run by XNNPACK).
  speedup: Optional[timing_lib.Speedup]  # Against the reference, paired (None: the
  # reference itself, or either file not run by XNNPACK).


FLOAT32_MAX_ABS_DIFF = 1e-4  # The x86 float32 gate's bound (export/gates.py).


def file_format(path: str) -> str:
  """float32, float16, dynamic_int8 or int8, read off the file: int8 activations come with
  QUANTIZE ops (or an integer input); float16 weights with float16 tensors; dynamic-range
  int8 has int8 weights and neither."""
  interp = litert.open_model(path, delegate="builtin").interpreter
  ops = {o["op_name"] for o in interp._get_ops_details()}  # pylint: disable=protected-access
  if "QUANTIZE" in ops or np.issubdtype(interp.get_input_details()[0]["dtype"], np.integer):
    return "int8"
  types = {np.dtype(t["dtype"]) for t in interp.get_tensor_details()}
  if np.dtype(np.float16) in types:
    return "float16"
  return "dynamic_int8" if np.dtype(np.int8) in types else "float32"


def outside(fmt: str, same: np.ndarray, max_abs_diff: float,
            scale: float = 1.0) -> Optional[str]:
  """Why arm64's outputs are not those of x86 for the same file, else None: any image whose
  class differs, and for float32 outputs beyond the x86 gate's 1e-4 (of `scale`: the largest
  |logit| for raw logits, export/head.py)."""
  reasons = []
  if fmt == "float32" and not max_abs_diff < FLOAT32_MAX_ABS_DIFF * scale:
    reasons.append(f"outputs differ from x86's by up to {max_abs_diff:.1e} (float32 bound "
                   f"{FLOAT32_MAX_ABS_DIFF * scale:g})")
  if not same.all():
    reasons.append(f"top-1 class differs from x86's on {int((~same).sum())} of {same.size} "
                   "images")
  return "; ".join(reasons) or None


def speed_text(name: str, reference: str, prepares: bool, reference_prepares: bool,
               speedup: Optional[str]) -> str:
  """The speed-up cell: the paired figure, or why there is none."""
  if not prepares:
    return "- (not run by XNNPACK)"
  if name == reference:
    return "1.00x (reference)"
  return speedup or ("- (the reference did not run with XNNPACK)" if not reference_prepares
                     else "-")


def notes(failing: Sequence[str], differing: Sequence[str]) -> List[str]:
  """What the ARM table's verdicts and figures mean, for the CLI and the run report."""
  verdict = ("Every file runs with XNNPACK on arm64. " if not failing else
             f"Would not run with XNNPACK on a phone: {', '.join(failing)} (LiteRT then falls "
             "back to its reference kernels, several times slower, and an app that requires "
             "the XNNPACK delegate fails). ")
  return [
      verdict + f"Outputs differ from x86's: {', '.join(differing) or 'none'}.",
      "Emulated time is a count of translated work, not a latency (BUILD.md, \"ARM under "
      "emulation\"): a ratio within one format shows whether XNNPACK's sparse path runs and "
      "bounds its gain. Across formats it is not comparable: qemu does ARM floating-point "
      "arithmetic in software and integer arithmetic far more cheaply, so int8 looks several "
      "times faster than on a phone. A float file takes the sparse path only when "
      "sparse-encoded (`_sparse`) and its graph qualifies (the report's \"XNNPACK sparse "
      "inference\" line; `--model=sparse_mobilenet --pruning_policy=xnnpack`); otherwise it "
      "runs about as fast as the dense file."]


def check(files: Dict[str, str], images: np.ndarray, rt: emulator.Runtime, reference: str,
          formats: Optional[Dict[str, str]] = None, runs: int = 40, rounds: int = 10,
          warmup_runs: int = 3, timeout_s: float = 3600,
          progress: Optional[Callable[[str], None]] = None,
          head: Optional[head_lib.Head] = None) -> List[Result]:
  """Every file run on the emulated arm64 LiteRT and on x86, one image at a time.

  Args:
    files: {name: .tflite path}; `reference` is one of the names (the dense float32 file).
    images: float32 raw images, the batch both sides run.
    rt: from emulator.prepare().
    formats: {name: format} (default: read off each file).
    runs, rounds, warmup_runs: emulated timing, interleaved as export/timing.py does.
    timeout_s: for the whole emulated run.
    progress: called with each line the emulated run reports ("arm: NAME: xnnpack", "arm:
      timing round 3/10").
    head: what the files output (export/head.py); None: guessed from each file's outputs.

  Returns:
    One Result per file, in order; `outside` judges each file's arm64 outputs against its own
    x86 outputs (the same top-1 class on every image; float32 within the x86 gate's 1e-4).
  """
  with tempfile.TemporaryDirectory(prefix="arm-check-") as tmp:
    request = _write_request(tmp, files, images, runs, rounds, warmup_runs)
    project = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = _guest_env(rt, project)
    log = os.path.join(tmp, "guest.log")
    returncode, timed_out = _run_guest(rt, request, env, project, log, timeout_s, progress)
    result = _read_result(tmp, log, returncode, timed_out, timeout_s)
    timings = {t["name"]: timing_lib.Timing(**t) for t in result["timings"]}
    return [_compare(name, path, images, result["files"][name], timings, reference, formats,
                     head) for name, path in files.items()]


def _write_request(tmp: str, files: Dict[str, str], images: np.ndarray, runs: int,
                   rounds: int, warmup_runs: int) -> str:
  """Saves the images and the guest's request (files, timing settings) in `tmp`; its path."""
  inputs = os.path.join(tmp, "inputs.npy")
  np.save(inputs, images.astype(np.float32))
  request = os.path.join(tmp, "request.json")
  with open(request, "w") as f:
    json.dump({"files": {n: os.path.abspath(p) for n, p in files.items()}, "inputs": inputs,
               "out_dir": tmp, "runs": runs, "rounds": rounds, "warmup_runs": warmup_runs}, f)
  return request


def _guest_env(rt: emulator.Runtime, project: str) -> Dict[str, str]:
  """The emulated Python's environment: the arm64 site-packages and the project importable."""
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([rt.site, project]), PYTHONNOUSERSITE="1",
             TF_CPP_MIN_LOG_LEVEL="2")
  env.pop("PYTHONHOME", None)
  return env


def _run_guest(rt: emulator.Runtime, request: str, env: Dict[str, str], project: str, log: str,
               timeout_s: float, progress: Optional[Callable[[str], None]]):
  """Runs export.arm_guest under the emulator, its output to `log`, killed after `timeout_s`.

  Returns:
    (exit status, whether the timeout killed it).
  """
  timed_out = threading.Event()
  with open(log, "w") as err, subprocess.Popen(
      emulator.command(rt, ["-m", "export.arm_guest", request]), env=env, cwd=project,
      stdout=err, stderr=subprocess.PIPE, text=True, errors="replace") as p:

    def kill():
      timed_out.set()
      p.kill()

    timer = threading.Timer(timeout_s, kill)
    timer.start()
    try:
      for line in p.stderr:
        err.write(line)
        if line.startswith("arm: ") and progress:
          progress(line.strip())
    finally:
      timer.cancel()
  return p.returncode, timed_out.is_set()


def _read_result(tmp: str, log: str, returncode: int, timed_out: bool,
                 timeout_s: float) -> dict:
  """The guest's result.json.

  Raises:
    RuntimeError: the run timed out, failed, or wrote no result (with the log's last line).
  """
  result_path = os.path.join(tmp, "result.json")
  if timed_out:
    raise RuntimeError(f"the emulated arm64 run timed out after {timeout_s:g} s (timeout_s); "
                       "use fewer or smaller files, or fewer examples and runs")
  if returncode or not os.path.exists(result_path):
    with open(log) as f:
      lines = [l for l in f.read().splitlines() if l.strip()] or [f"exit {returncode}"]
    raise RuntimeError(f"the emulated arm64 run failed (exit {returncode}): {lines[-1]}")
  with open(result_path) as f:
    return json.load(f)


def _compare(name: str, path: str, images: np.ndarray, guest: dict,
             timings: Dict[str, timing_lib.Timing], reference: str,
             formats: Optional[Dict[str, str]], head: Optional[head_lib.Head]) -> Result:
  """One file's Result: its arm64 outputs (`guest`) against x86's, and its emulated timing."""
  arm = np.load(guest["outputs"])
  x86 = litert.predict(litert.open_model(path), images, batch_size=1)
  head = head or head_lib.guess(x86)
  same = head.classes(arm) == head.classes(x86)
  fmt = (formats or {}).get(name) or file_format(path)
  diff = float(np.max(np.abs(arm - x86)))
  reason = guest["fallback_reason"]
  return Result(
      name, fmt, guest["delegate"] == "xnnpack", reason, diff,
      float(np.mean(same)), outside(fmt, same, diff, head.scale(x86)),
      timings[name].p50_ms if name in timings else None,
      timing_lib.speedup(timings[reference], timings[name])
      if name != reference and {name, reference} <= set(timings) else None)


def to_markdown(results: Sequence[Result], reference: str) -> str:
  rows = [f"ARM check ({emulator.LABEL}; outputs against x86 on the same images, batch 1):", "",
          f"| file | format | ARM: prepares | ARM: max \\|diff\\| | ARM emulated speed-up vs "
          f"{reference} (paired, p10-p90) | emulated ms |", "|---|---|---|---|---|---|"]
  ref_prepares = all(r.prepares for r in results if r.name == reference)
  for r in results:
    prepares = "yes" if r.prepares else f"**NO**: {r.error}"
    diff = f"{r.max_abs_diff:.1e}" + (f" (**outside**: {r.outside})" if r.outside else "")
    speed = speed_text(r.name, reference, r.prepares, ref_prepares,
                       r.speedup.describe() if r.speedup else None)
    ms = "-" if r.emulated_ms is None else f"{r.emulated_ms:.1f}"
    rows.append(f"| {r.name} | {r.format} | {prepares} | {diff} | {speed} | {ms} |")
  rows += [""] + notes([r.name for r in results if not r.prepares],
                       [r.name for r in results if r.outside])
  return "\n".join(rows)


def as_dict(r: Result) -> dict:
  return dict(dataclasses.asdict(r), speedup=r.speedup.as_dict() if r.speedup else None)
