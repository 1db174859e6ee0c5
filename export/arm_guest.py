"""The half of the ARM check that runs inside the emulated arm64 Python (export/arm_check.py
starts it).

Imports only numpy, LiteRT and export.litert / export.timing (pure numpy + LiteRT), which is
all the emulated runtime has. Reads a request JSON, writes a result JSON:

  request: {"files": {name: path}, "inputs": x.npy, "out_dir": dir, "warmup_runs": int,
            "runs": int, "rounds": int}
  result:  {"machine": ..., "files": {name: {"delegate", "fallback_reason", "outputs" (npy)}},
            "timings": [Timing as a dict, in the order of "files"]}

Each file is opened with XNNPACK (LiteRT's default delegate); a file XNNPACK will not prepare
is reopened on the builtin kernels and says why, as on x86. Outputs are computed one image
at a time (batch 1, as on a phone), then the files XNNPACK runs are timed in interleaved
rounds (a file it does not run would fail on a phone; its builtin-kernel time is no answer).
"""

import dataclasses
import json
import os
import platform
import sys

import numpy as np

from export import litert
from export import timing


def main(request_path: str) -> None:
  with open(request_path) as f:
    req = json.load(f)
  x = np.load(req["inputs"])
  files = {}
  for i, (name, path) in enumerate(req["files"].items()):
    opened = litert.open_model(path)
    try:
      y = litert.predict(opened, x, batch_size=1)
    except RuntimeError as e:  # XNNPACK can prepare, then fail to reshape at the first invoke.
      reason = " ".join(str(e).split())[:300]
      opened = litert.Opened(litert.open_model(path, delegate="builtin").interpreter, "builtin",
                             f"XNNPACK failed at the first invoke: {reason}")
      y = litert.predict(opened, x, batch_size=1)
    out = os.path.join(req["out_dir"], f"{i}.arm.npy")  # Names may hold a path.
    np.save(out, y)
    files[name] = {"delegate": opened.delegate, "fallback_reason": opened.fallback_reason or "",
                   "outputs": out}
    print(f"arm: {name}: {opened.delegate} {opened.fallback_reason or ''}", file=sys.stderr,
          flush=True)
  timed = {n: p for n, p in req["files"].items() if files[n]["delegate"] == "xnnpack"}
  def progress(done, rounds):
    print(f"arm: timing round {done}/{rounds}", file=sys.stderr, flush=True)

  timings = timing.measure(timed, warmup_runs=req["warmup_runs"], runs=req["runs"],
                           rounds=req["rounds"], progress=progress) if timed else []
  result = {"machine": platform.machine(), "files": files,
            "timings": [dataclasses.asdict(t) for t in timings]}
  with open(os.path.join(req["out_dir"], "result.json"), "w") as f:
    json.dump(result, f)


if __name__ == "__main__":
  main(sys.argv[1])
