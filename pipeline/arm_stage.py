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

REFERENCE = "baseline_float32"  # export/tflite.py's REFERENCE (not imported: report.py reads
# this module, and the export modules bring in TensorFlow).
RUNS, ROUNDS, WARMUP_RUNS = 20, 5, 2  # Emulated timing: ~300x slower than native.


def preflight(cfg) -> None:
  """Says before any training when --arm_check will be skipped (the stage says it again)."""
  from export import emulator  # pylint: disable=g-import-not-at-top
  if cfg.arm_check and not emulator.ready():
    logging.warning("--arm_check: the emulated ARM runtime is not set up yet (`make arm`); the "
                    "arm stage will try to set it up after the x86 benchmark.")


def stage(rows: List[dict], data, cfg, con, seconds: dict) -> dict:
  """Adds "arm" to each row; returns the report's "arm" section. An emulator that cannot be
  set up or a check that fails is recorded in the section, and the run goes on."""
  # pylint: disable=g-import-not-at-top
  from export import arm_check
  from export import emulator
  from pipeline import data as data_lib
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
      results = arm_check.check({r["name"]: r["path"] for r in rows}, x, rt, REFERENCE,
                                {r["name"]: r["format"] for r in rows}, runs=RUNS,
                                rounds=ROUNDS, warmup_runs=WARMUP_RUNS, progress=progress)
    except (RuntimeError, OSError, ValueError) as e:
      logging.error("--arm_check failed: %s; the run goes on without it.", e)
      info["summary"] = f"FAILED: {e}"
      return {"runtime": emulator.LABEL, "skipped": f"the check failed: {e}"}
    finally:
      bar.close()
    for r, res in zip(rows, results):
      r["arm"] = arm_check.as_dict(res)
    failing = [r.name for r in results if not r.prepares]
    differing = [r.name for r in results if r.outside]
    info["summary"] = (f"{len(results) - len(failing)}/{len(results)} files run with XNNPACK "
                       f"on emulated arm64; not: {', '.join(failing) or 'none'}; outputs "
                       f"differ from x86's: {', '.join(differing) or 'none'}")
    for r in results:
      if not r.prepares or r.outside:
        logging.warning("%s on arm64: %s", r.name, r.error or r.outside)
  return {"runtime": emulator.LABEL, "skipped": None, "examples": len(x),
          "runs": RUNS, "rounds": ROUNDS}


def lines(section: Optional[dict], exports: Sequence[dict]) -> List[str]:
  """The report's ARM table (empty without --arm_check)."""
  if not section:
    return []
  if section.get("skipped"):
    return ["", f"--arm_check skipped: {section['skipped']}."]
  from export import arm_check  # pylint: disable=g-import-not-at-top
  out = ["", f"ARM check ({section['runtime']}; outputs on {section['examples']} test images "
         "against x86's, one at a time; emulated times interleaved in one process):", "",
         "| file | format | ARM: prepares | ARM: max \\|diff\\| | ARM emulated speed-up "
         "(p10-p90) | emulated ms |", "|---|---|---|---|---|---|"]
  arm = {e["name"]: e["arm"] for e in exports if e.get("arm")}
  ref_prepares = arm.get(REFERENCE, {}).get("prepares", False)
  for e in exports:
    a = arm.get(e["name"])
    if not a:
      continue
    prepares = "yes" if a["prepares"] else f"**NO**: {a['error']}"
    diff = f"{a['max_abs_diff']:.1e}" + (f" (**outside**: {a['outside']})" if a["outside"] else "")
    s = a["speedup"]
    speed = arm_check.speed_text(e["name"], REFERENCE, a["prepares"], ref_prepares,
                                 f"{s['paired']:.2f}x ({s['p10']:.2f}-{s['p90']:.2f})" if s
                                 else None)
    ms = "-" if a["emulated_ms"] is None else f"{a['emulated_ms']:.1f}"
    out.append(f"| {e['name']} | {a['format']} | {prepares} | {diff} | {speed} | {ms} |")
  return out + [""] + arm_check.notes([n for n, a in arm.items() if not a["prepares"]],
                                      [n for n, a in arm.items() if a["outside"]])
