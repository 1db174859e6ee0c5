"""The "arm" stage (`--arm_check`): every exported file on the ARM build of LiteRT, emulated.

A sparse file that runs on x86 may not prepare on a phone's XNNPACK (the sparse path takes
only some graphs), and XNNPACK's sparse kernels never run on x86 with AVX. This stage runs the
run's files on the emulated arm64 runtime (export/emulator.py, set up on first use) and adds
to each report row: whether XNNPACK prepares it there, its outputs on --arm_examples test
images (drawn at random, seeded) against the x86 outputs, and its emulated speed-up against
the dense float32 baseline file. Without root or the packages the stage says what is missing and
the run goes on.
"""

from typing import List

from absl import logging

from export import formats

RUNS, ROUNDS, WARMUP_RUNS = 20, 5, 2  # Few: emulation is slow (docs/arm-and-phones.md).


def preflight(cfg) -> None:
  """Says before any training when --arm_check will be skipped (the stage says it again)."""
  from export import emulator  # pylint: disable=g-import-not-at-top
  if cfg.arm_check and not emulator.ready():
    logging.warning("--arm_check: the emulated ARM runtime is not set up yet (`make arm`); the "
                    "arm stage will try to set it up after the x86 benchmark.")


def stage(rows: List, data, cfg, con, seconds: dict, head=None) -> dict:
  """Fills each report/rows.ExportRow's `arm`; returns the report's "arm" section. An emulator that cannot be
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
      results = arm_check.check({r.name: r.path for r in rows}, x, rt, formats.REFERENCE,
                                {r.name: r.format for r in rows}, runs=RUNS,
                                rounds=ROUNDS, warmup_runs=WARMUP_RUNS, progress=progress,
                                head=head)
    except (RuntimeError, OSError, ValueError) as e:
      logging.error("--arm_check failed: %s; the run goes on without it.", e)
      info["summary"] = f"FAILED: {e}"
      return {"runtime": emulator.LABEL, "skipped": f"the check failed: {e}"}
    finally:
      bar.close()
    for r, res in zip(rows, results):
      r.arm = arm_check.as_dict(res)
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
