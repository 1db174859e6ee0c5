"""The ARM check: .tflite files run on the emulated arm64 LiteRT (export/emulator.py) and on
x86 with the same images. Per file: does XNNPACK prepare it on arm64 (the exact error if not),
are its outputs within its format's bound against x86's (export/gates.py), and its emulated
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
from export import gates as gates_lib
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


def file_format(path: str) -> str:
  """float32, float16, dynamic_int8 or int8: from the pipeline's file name (..._int8[_sparse]),
  else read off the file (int8 activations: int8; int8 weights: dynamic_int8)."""
  stem = os.path.splitext(os.path.basename(path))[0].removesuffix("_sparse")
  for fmt in ("dynamic_int8", "int8", "float16", "float32"):
    if stem.endswith(fmt):
      return fmt
  interp = litert.open_model(path, delegate="builtin").interpreter
  inp = interp.get_input_details()[0]
  if np.issubdtype(inp["dtype"], np.integer):
    return "int8"
  tensors = interp.get_tensor_details()
  if any(t["dtype"] == np.float16 for t in tensors):
    return "float16"
  if any(t["dtype"] == np.int8 and t["quantization"][0] > 0 and "Relu" in t["name"]
         for t in tensors):
    return "int8"
  return "dynamic_int8" if any(t["dtype"] == np.int8 for t in tensors) else "float32"


def check(files: Dict[str, str], images: np.ndarray, rt: emulator.Runtime, reference: str,
          formats: Optional[Dict[str, str]] = None, runs: int = 40, rounds: int = 10,
          warmup_runs: int = 3, timeout_s: float = 3600,
          progress: Optional[Callable[[str], None]] = None) -> List[Result]:
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

  Returns:
    One Result per file, in order. Outputs are judged as the x86 gates judge a file against
    its Keras model (export/gates.py), with the x86 file's outputs in the Keras model's place.
  """
  with tempfile.TemporaryDirectory(prefix="arm-check-") as tmp:
    inputs = os.path.join(tmp, "inputs.npy")
    np.save(inputs, images.astype(np.float32))
    request = os.path.join(tmp, "request.json")
    with open(request, "w") as f:
      json.dump({"files": {n: os.path.abspath(p) for n, p in files.items()}, "inputs": inputs,
                 "out_dir": tmp, "runs": runs, "rounds": rounds, "warmup_runs": warmup_runs}, f)
    project = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([rt.site, project]), PYTHONNOUSERSITE="1",
               TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("PYTHONHOME", None)
    log = os.path.join(tmp, "guest.log")
    with open(log, "w") as err, subprocess.Popen(
        emulator.command(rt, ["-m", "export.arm_guest", request]), env=env, cwd=project,
        stdout=err, stderr=subprocess.PIPE, text=True) as p:
      timer = threading.Timer(timeout_s, p.kill)
      timer.start()
      try:
        for line in p.stderr:
          err.write(line)
          if line.startswith("arm: ") and progress:
            progress(line.strip())
      finally:
        timer.cancel()
    result_path = os.path.join(tmp, "result.json")
    if p.returncode or not os.path.exists(result_path):
      with open(log) as f:
        lines = [l for l in f.read().splitlines() if l.strip()] or [f"exit {p.returncode}"]
      raise RuntimeError(f"the emulated arm64 run failed (exit {p.returncode}): {lines[-1]}")
    with open(result_path) as f:
      result = json.load(f)
    timings = {t["name"]: timing_lib.Timing(**t) for t in result["timings"]}
    out = []
    for name, path in files.items():
      arm = np.load(result["files"][name]["outputs"])
      x86 = litert.predict(litert.open_model(path), images, batch_size=1)
      same = np.argmax(arm, -1) == np.argmax(x86, -1)
      fmt = (formats or {}).get(name) or file_format(path)
      diff = float(np.max(np.abs(arm - x86)))
      # The x86 file stands where the Keras model stands in the x86 gates: its classes are
      # the labels, so accuracy is agreement and the x86 accuracy is 1.
      outside = gates_lib.check(fmt, float(np.mean(same)), 1.0, float(np.mean(same)), diff)
      reason = result["files"][name]["fallback_reason"]
      out.append(Result(
          name, fmt, result["files"][name]["delegate"] == "xnnpack", reason, diff,
          float(np.mean(same)), outside, timings[name].p50_ms if name in timings else None,
          timing_lib.speedup(timings[reference], timings[name])
          if name != reference and {name, reference} <= set(timings) else None))
  return out


def to_markdown(results: Sequence[Result], reference: str) -> str:
  rows = [f"ARM check ({emulator.LABEL}; outputs against x86 on the same images, batch 1):", "",
          f"| file | format | ARM: prepares | ARM: max \\|diff\\| | ARM emulated speed-up vs "
          f"{reference} (paired, p10-p90) | emulated ms |", "|---|---|---|---|---|---|"]
  for r in results:
    prepares = "yes" if r.prepares else f"**NO**: {r.error}"
    diff = f"{r.max_abs_diff:.1e}" + (f" (**outside**: {r.outside})" if r.outside else "")
    speed = ("1.00x (reference)" if r.name == reference else
             r.speedup.describe() if r.speedup else "- (not run by XNNPACK)")
    ms = "-" if r.emulated_ms is None else f"{r.emulated_ms:.1f}"
    rows.append(f"| {r.name} | {r.format} | {prepares} | {diff} | {speed} | {ms} |")
  failing = [r.name for r in results if not r.prepares or r.outside]
  rows += ["", "Would fail on a phone (XNNPACK does not prepare it, or its outputs differ): " +
           (", ".join(failing) if failing else "none") + ".",
           "Emulated time counts translated instructions, not a phone's caches or memory: it "
           "shows whether XNNPACK's sparse path runs and bounds its gain; it is not a latency."]
  return "\n".join(rows)


def as_dict(r: Result) -> dict:
  return dict(dataclasses.asdict(r), speedup=r.speedup.as_dict() if r.speedup else None)
