"""`python -m export.arm FILE...`: run .tflite files on the ARM build of LiteRT, emulated here.

For each file: does XNNPACK prepare it on arm64 (the exact error if not), its outputs against
the same file's on x86 (same images, the format's bound from export/gates.py), and its
*emulated* time against the reference file (the first, or --reference), interleaved in one
emulated process. The emulated runtime (qemu-user, Debian's arm64 Python, the aarch64 LiteRT
wheel) is set up on first use in --arm_dir; `--setup_only` (what `make arm` runs first) only
sets it up. Defaults: --examples=50 --runs=40 --rounds=10 --warmup_runs=3.

  python -m export.arm runs/x/tflite/baseline_float32.tflite runs/x/tflite/pruned_float32.tflite
"""

import json
import os

from absl import flags

from pipeline import cli
from pipeline import shared_flags
from pipeline.cli import fail

_REFERENCE = flags.DEFINE_string("reference", None, "File (path or name) emulated speed-ups are "
                                 "measured against (default: the first file).")
_IMAGES = flags.DEFINE_string("images", None, "A .npy of float32 raw images (N, H, W, C) to run "
                              "on both sides (default: random pixels 0-255, seed 0).")
_EXAMPLES = flags.DEFINE_integer("examples", 50, "Images compared against x86, one invoke each "
                                 "(emulation is ~300x slower than native).", lower_bound=1)
_ARM_DIR = flags.DEFINE_string("arm_dir", None, "Where the emulated runtime is kept (default: "
                               "$PRUNE_ARM_DIR, else ~/.cache/prune-pipeline/arm-litert<ver>).")
_SETUP_ONLY = flags.DEFINE_bool("setup_only", False, "Set the emulated runtime up, say where, "
                                "and stop.")
_JSON = flags.DEFINE_string("json", None, "Also write the results to this JSON file.")
SHARED = ("runs", "rounds", "warmup_runs")


def _images(shape_from: str):
  import numpy as np  # pylint: disable=g-import-not-at-top
  from export import litert  # pylint: disable=g-import-not-at-top
  if _IMAGES.value:
    try:
      x = np.load(_IMAGES.value).astype(np.float32)
    except (OSError, ValueError) as e:
      fail(f"--images={_IMAGES.value}: not a readable .npy file ({e})")
    return x[:_EXAMPLES.value]
  shape = litert.open_model(shape_from, delegate="builtin").interpreter.get_input_details()[0][
      "shape"][1:]
  return np.random.default_rng(0).uniform(0, 255, (_EXAMPLES.value, *shape)).astype(np.float32)


def main(argv):
  from export import emulator  # pylint: disable=g-import-not-at-top
  try:
    rt = emulator.prepare(_ARM_DIR.value)
  except emulator.Unavailable as e:
    fail(str(e))
  if _SETUP_ONLY.value:
    print(f"ARM runtime ready: {rt.root} ({rt.python} under {rt.qemu})")
    return
  paths = argv[1:]
  if not paths:
    fail("no .tflite file given; usage: python -m export.arm FILE... [--reference=FILE]")
  for p in paths:
    if not os.path.isfile(p):
      fail(f"{p}: no such file")
  names = [os.path.splitext(os.path.basename(p))[0] for p in paths]
  if len(set(names)) < len(names):
    names = [os.path.splitext(p)[0] for p in paths]
  ref = _REFERENCE.value or paths[0]
  if ref not in paths and ref not in names:
    fail(f"--reference={ref}: not among the files given")
  ref_name = names[paths.index(ref)] if ref in paths else ref

  from export import arm_check  # pylint: disable=g-import-not-at-top
  images = _images(paths[names.index(ref_name)])
  try:
    results = arm_check.check(dict(zip(names, paths)), images, rt, ref_name,
                              runs=shared_flags.value(shared_flags.RUNS, 40),
                              rounds=shared_flags.value(shared_flags.ROUNDS, 10),
                              warmup_runs=shared_flags.value(shared_flags.WARMUP_RUNS, 3))
  except (ValueError, RuntimeError) as e:
    fail(str(e))
  print(arm_check.to_markdown(results, ref_name))
  if _JSON.value:
    from pipeline import workdir  # pylint: disable=g-import-not-at-top
    workdir.atomic_write(_JSON.value, json.dumps(
        {"reference": ref_name, "runtime": emulator.LABEL,
         "results": [arm_check.as_dict(r) for r in results]}, indent=2) + "\n")


def run():
  cli.run(main, __name__, shared=SHARED)


if __name__ == "__main__":
  run()
