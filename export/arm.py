"""`python -m export.arm FILE...`: run .tflite files on the ARM build of LiteRT, emulated here.

For each file: does XNNPACK prepare it on arm64 (the exact error if not), its outputs against
the same file's on x86 (same images: the same top-1 class on each; float32 within 1e-4), its
*emulated* time against the reference file (the first, or --reference), interleaved in one
emulated process. Image classifiers only (one input). The emulated runtime (qemu-user,
Debian's arm64 Python, the aarch64 LiteRT wheel) is set up on first use in --arm_dir;
`--setup_only` (what `make arm` runs first) only sets it up. Defaults: --examples=50 --runs=40
--rounds=10 --warmup_runs=3.

  python -m export.arm runs/x/tflite/baseline_float32.tflite runs/x/tflite/pruned_float32.tflite
"""

import json
import os

from absl import flags

from export import cli
from export import shared_flags
from export.cli import fail

_IMAGES = flags.DEFINE_string("images", None, "A .npy of float32 raw images (N, H, W, C) to run "
                              "on both sides (default: random pixels 0-255, seed 0).")
_EXAMPLES = flags.DEFINE_integer("examples", 50, "Images compared against x86, one invoke each "
                                 "(emulation is ~300x slower than native).", lower_bound=1)
_ARM_DIR = flags.DEFINE_string("arm_dir", None, "Where the emulated runtime is kept (default: "
                               "$PRUNE_ARM_DIR, else ~/.cache/prune-pipeline/arm-litert<ver>).")
_SETUP_ONLY = flags.DEFINE_bool("setup_only", False, "Set the emulated runtime up, say where, "
                                "and stop.")
SHARED = ("runs", "rounds", "warmup_runs", "reference", "json")


def _inputs(paths, names):
  """Each file's input shape (batch dimension left out), checked here on x86 before the slow
  emulated run: one line for a file LiteRT cannot open or one with several inputs."""
  from export import litert  # pylint: disable=g-import-not-at-top
  shapes = {}
  for p, n in zip(paths, names):
    try:
      details = litert.open_model(p, delegate="builtin").interpreter.get_input_details()
    except ValueError as e:
      fail(str(e))
    if len(details) != 1:
      fail(f"{p}: has {len(details)} inputs; the ARM check runs image classifiers (one input)")
    shapes[n] = tuple(int(d) for d in details[0]["shape"][1:])
  return shapes


def _images(shapes, ref_name):
  import numpy as np  # pylint: disable=g-import-not-at-top
  want = shapes[ref_name]
  if not _IMAGES.value:
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, (_EXAMPLES.value, *want)).astype(np.float32)
  try:
    x = np.load(_IMAGES.value, allow_pickle=False)
  except OSError as e:
    fail(f"--images={_IMAGES.value}: cannot read it ({e.strerror or e})")
  except ValueError:  # numpy's words for a file that is not an array (it suggests pickles).
    fail(f"--images={_IMAGES.value}: not a .npy array (np.save of a float32 (N, H, W, C) array)")
  if x.ndim != len(want) + 1 or not len(x):
    fail(f"--images={_IMAGES.value}: shape {x.shape}; needs (N>0, "
         f"{', '.join(map(str, want))}) for {ref_name}")
  for n, shape in shapes.items():
    if tuple(x.shape[1:]) != shape:
      fail(f"--images={_IMAGES.value}: shape {x.shape} does not fit {n}'s input "
           f"{'x'.join(map(str, shape))}")
  return x[:_EXAMPLES.value].astype(np.float32)


def main(argv):
  paths = argv[1:]
  if not paths and not _SETUP_ONLY.value:
    fail("no .tflite file given; usage: python -m export.arm FILE... [--reference=FILE]")
  for p in paths:
    if not os.path.isfile(p):
      fail(f"{p}: no such file")
  names = cli.short_names(paths)
  images = ref_name = None
  if paths:
    ref_name = cli.reference_name(shared_flags.REFERENCE.value, paths, names)
    images = _images(_inputs(paths, names), ref_name)

  from export import emulator  # pylint: disable=g-import-not-at-top
  try:
    rt = emulator.prepare(_ARM_DIR.value)
  except emulator.Unavailable as e:
    fail(str(e))
  if _SETUP_ONLY.value:
    print(f"ARM runtime ready: {rt.root} ({rt.python} under {rt.qemu})")
    return
  from export import arm_check  # pylint: disable=g-import-not-at-top
  try:
    results = arm_check.check(dict(zip(names, paths)), images, rt, ref_name,
                              runs=shared_flags.value(shared_flags.RUNS, 40),
                              rounds=shared_flags.value(shared_flags.ROUNDS, 10),
                              warmup_runs=shared_flags.value(shared_flags.WARMUP_RUNS, 3))
  except (ValueError, RuntimeError) as e:
    fail(str(e), status=1)
  print(f"{len(images)} images, one invoke each on both sides.\n")
  print(arm_check.to_markdown(results, ref_name))
  if shared_flags.JSON.value:
    from export import workdir  # pylint: disable=g-import-not-at-top
    workdir.atomic_write(shared_flags.JSON.value, json.dumps(
        {"reference": ref_name, "runtime": emulator.LABEL, "examples": len(images),
         "results": [arm_check.as_dict(r) for r in results]}, indent=2) + "\n")


def run():
  cli.run(main, __name__, shared=SHARED)


if __name__ == "__main__":
  run()
