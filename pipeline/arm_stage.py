"""The "arm" stage (`--arm_check`): every exported file on the ARM build of LiteRT, emulated.

A sparse file that runs on x86 may not prepare on a phone's XNNPACK (the sparse path takes
only some graphs), and XNNPACK's sparse kernels never run on x86 with AVX. This stage runs the
run's files on the emulated arm64 runtime (export/emulator.py, set up on first use) and adds
to each report row: whether XNNPACK prepares it there, its outputs on --arm_examples test
images (drawn at random, seeded) against the x86 outputs, and its emulated speed-up against
the dense float32 baseline file. Without root or the packages the stage says what is missing and
the run goes on.
"""

from typing import List, Optional, Sequence

from absl import logging

from export import arm_check
from export import emulator
from export import tflite as tflite_lib
from pipeline import data as data_lib
from pipeline.config import Config

RUNS, ROUNDS, WARMUP_RUNS = 20, 5, 2  # Emulated timing: ~300x slower than native.


def stage(rows: List[dict], data: data_lib.Dataset, cfg: Config, con, seconds: dict) -> dict:
  """Adds "arm" to each row (None when skipped); returns the report's "arm" section."""
  with con.stage("arm", seconds) as info:
    try:
      rt = emulator.prepare()
    except emulator.Unavailable as e:
      logging.warning("%s; the run goes on without it.", e)
      info["summary"] = f"skipped: {e}"
      return {"runtime": None, "skipped": str(e)}
    x, _ = data_lib.sample(data.test, cfg.arm_examples, cfg.seed)
    bar = con.bar(len(rows) + ROUNDS, "arm64 (emulated)", "step")

    def progress(line):
      bar.update(1)
      logging.info("%s", line)

    try:
      results = arm_check.check({r["name"]: r["path"] for r in rows}, x, rt,
                                tflite_lib.REFERENCE, {r["name"]: r["format"] for r in rows},
                                runs=RUNS, rounds=ROUNDS, warmup_runs=WARMUP_RUNS,
                                progress=progress)
    finally:
      bar.close()
    for r, res in zip(rows, results):
      r["arm"] = arm_check.as_dict(res)
    failing = [r.name for r in results if not r.prepares or r.outside]
    info["summary"] = (f"{sum(r.prepares for r in results)}/{len(results)} files prepare with "
                       f"XNNPACK on emulated arm64; would fail on a phone: "
                       f"{', '.join(failing) or 'none'}")
    for name in failing:
      logging.warning("%s would fail on a phone: %s", name, next(
          r.error or r.outside for r in results if r.name == name))
  return {"runtime": emulator.LABEL, "skipped": None, "examples": len(x),
          "runs": RUNS, "rounds": ROUNDS}


def lines(section: Optional[dict], exports: Sequence[dict]) -> List[str]:
  """The report's ARM table (empty without --arm_check)."""
  if not section:
    return []
  if section.get("skipped"):
    return ["", f"ARM check (--arm_check) skipped: {section['skipped']}."]
  out = ["", f"ARM check ({section['runtime']}; outputs on {section['examples']} test images "
         "against x86's, one at a time; emulated times interleaved in one process):", "",
         "| file | ARM: prepares | ARM: max \\|diff\\| | ARM emulated speed-up (p10-p90) |",
         "|---|---|---|---|"]
  for e in exports:
    a = e.get("arm")
    if not a:
      continue
    prepares = "yes" if a["prepares"] else f"**NO**: {a['error']}"
    diff = f"{a['max_abs_diff']:.1e}" + (f" (**outside**: {a['outside']})" if a["outside"] else "")
    s = a["speedup"]
    speed = ("1.00x (reference)" if e["name"] == tflite_lib.REFERENCE else
             f"{s['paired']:.2f}x ({s['p10']:.2f}-{s['p90']:.2f})" if s else
             "- (not run by XNNPACK)")
    out.append(f"| {e['name']} | {prepares} | {diff} | {speed} |")
  failing = [e["name"] for e in exports if e.get("arm") and (
      not e["arm"]["prepares"] or e["arm"]["outside"])]
  out += ["", "Would fail on a phone (XNNPACK does not prepare it there, or its outputs differ "
          "from x86's): " + (", ".join(failing) or "none") + ". Emulated time counts translated "
          "instructions, not a phone's caches: it shows whether XNNPACK's sparse path runs and "
          "bounds its gain; it is not a phone latency (BUILD.md)."]
  return out
