"""Run .tflite files on the ARM build of LiteRT here, under emulation: does each prepare with
XNNPACK on arm64, do its outputs match x86's, and does XNNPACK's sparse path make it faster?

XNNPACK turns its sparse kernels off on any x86 CPU with AVX, so on the machines here a sparse
file is never faster and a graph the sparse path cannot take never fails. Phones are ARM. The
runtime is the aarch64 `ai-edge-litert` wheel in Debian's arm64 Python, run by qemu-user
(`qemu-aarch64 -cpu cortex-a76`), with an ARM /proc/cpuinfo bound in a private mount namespace
(LiteRT reads the CPU's features from it and crashes on the host's). Everything comes from
the package registries: Debian's qemu-user and arm64 packages, and PyPI's aarch64 wheels.

Emulated time is an indication, not a phone latency: qemu translates each ARM instruction
into several x86 ones and has no model of caches or memory stalls, so a ratio of emulated
times says whether the sparse path runs and bounds its gain (published phone gains for 80-90%
sparse MobileNets are 1.3-2.4x). export/arm_check.py runs the check; export/arm.py is the CLI.
"""

import dataclasses
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from typing import List, Optional, Sequence

from absl import logging


# A Cortex-A76-like core (fp16 and dot-product arithmetic), what XNNPACK picks kernels for.
CPUINFO = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm \
lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x4
CPU part\t: 0xd0b
CPU revision\t: 1

"""
# Debian's arm64 Python and the libraries it and LiteRT load (BUILD.md, "ARM under emulation").
LIBRARIES = ("libc6", "libgcc-s1", "libstdc++6", "zlib1g", "libexpat1", "libssl3", "libffi8",
             "libbz2-1.0", "liblzma5")
NUMPY = "numpy<2.3"  # The aarch64 numpy checked under qemu 7.2 (BUILD.md).
PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_27_aarch64",
             "manylinux_2_28_aarch64")
# The emulated core and the cpuinfo agree: with `-cpu max` (features a Cortex-A76 lacks, seen
# through getauxval) the int8 small_cnn gave class 2 for every MNIST image, against x86's
# right classes; with `-cpu cortex-a76` (also neoverse-n1) its outputs equal x86's.
CPU = "cortex-a76"
LABEL = f"emulated arm64 (qemu-aarch64 -cpu {CPU}), LiteRT XNNPACK, 1 thread"


class Unavailable(RuntimeError):
  """The emulated runtime cannot be set up here; the message is one line saying what is missing."""


@dataclasses.dataclass(frozen=True)
class Runtime:
  root: str  # The cache folder.
  qemu: str
  python: str  # The arm64 python, inside sysroot.

  @property
  def sysroot(self):
    return os.path.join(self.root, "sysroot")

  @property
  def site(self):
    return os.path.join(self.root, "site")

  @property
  def cpuinfo(self):
    return os.path.join(self.root, "cpuinfo")


def default_dir() -> str:
  """Where the runtime is kept: $PRUNE_ARM_DIR, else ~/.cache/prune-pipeline/arm-<litert>."""
  version = importlib.metadata.version("ai-edge-litert")
  return os.environ.get("PRUNE_ARM_DIR") or os.path.join(
      os.path.expanduser("~"), ".cache", "prune-pipeline", f"arm-litert{version}")


def _run(cmd: Sequence[str], what: str, **kwargs) -> str:
  try:
    p = subprocess.run(list(cmd), capture_output=True, text=True, check=False, errors="replace",
                       **kwargs)
  except OSError as e:  # No such program (a host without Debian's tools), or not runnable.
    raise Unavailable(f"ARM check unavailable: {what} failed ({cmd[0]}: {e.strerror})") from None
  if p.returncode:
    last = (p.stderr.strip() or p.stdout.strip() or f"exit {p.returncode}").splitlines()[-1]
    raise Unavailable(f"ARM check unavailable: {what} failed ({' '.join(cmd[:4])}: {last})")
  return p.stdout


def _root() -> bool:
  return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get") is not None


def _qemu() -> str:
  found = shutil.which("qemu-aarch64")
  if found:
    return found
  if not _root():
    raise Unavailable("ARM check unavailable: qemu-aarch64 not found, and installing Debian's "
                      "qemu-user needs root and apt-get (apt-get install qemu-user)")
  logging.info("ARM runtime: installing Debian's qemu-user.")
  try:
    _run(["apt-get", "install", "-y", "-qq", "qemu-user"], "installing qemu-user")
  except Unavailable:
    _run(["apt-get", "update", "-qq"], "apt-get update")
    _run(["apt-get", "install", "-y", "-qq", "qemu-user"], "installing qemu-user")
  return shutil.which("qemu-aarch64") or "qemu-aarch64"


def _sysroot(dest: str) -> str:
  """Debian's arm64 python3 and its libraries unpacked into `dest`; returns its version."""
  if "arm64" not in _run(["dpkg", "--print-foreign-architectures"], "dpkg").split():
    if not _root():
      raise Unavailable("ARM check unavailable: Debian's arm64 packages are not enabled, and "
                        "enabling them needs root (dpkg --add-architecture arm64)")
    logging.info("ARM runtime: enabling Debian's arm64 packages.")
    _run(["dpkg", "--add-architecture", "arm64"], "dpkg --add-architecture arm64")
    try:
      _run(["apt-get", "update", "-qq"], "apt-get update")
    except Unavailable:  # Leave apt as it was (e.g. no arm64 mirror): later updates must work.
      subprocess.run(["dpkg", "--remove-architecture", "arm64"], check=False)
      raise
  deps = _run(["apt-cache", "depends", "python3-minimal:arm64"], "apt-cache depends")
  py = next((w.split(":")[0] for w in deps.split() if w.startswith("python3.")), None)
  if py is None:
    raise Unavailable("ARM check unavailable: apt-cache names no arm64 python3.X-minimal "
                      "(apt-get update after dpkg --add-architecture arm64?)")
  version = py[len("python"):-len("-minimal")]
  debs = os.path.join(dest, "debs")
  os.makedirs(debs)
  names = [py, f"libpython{version}-minimal", f"libpython{version}-stdlib", *LIBRARIES]
  logging.info("ARM runtime: downloading %d arm64 packages.", len(names))
  _run(["apt-get", "download", "-qq", *[f"{n}:arm64" for n in names]],
       "downloading the arm64 packages", cwd=debs)
  for deb in sorted(os.listdir(debs)):
    _run(["dpkg", "-x", os.path.join(debs, deb), os.path.join(dest, "sysroot")], f"dpkg -x {deb}")
  shutil.rmtree(debs)
  return version


def _wheels(dest: str, python_version: str) -> None:
  wheels = os.path.join(dest, "wheels")
  litert_version = importlib.metadata.version("ai-edge-litert")
  logging.info("ARM runtime: downloading the aarch64 wheels of ai-edge-litert %s and %s.",
               litert_version, NUMPY)
  platforms = [a for p in PLATFORMS for a in ("--platform", p)]
  _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
        *platforms, "--python-version", python_version, "-d", wheels,
        f"ai-edge-litert=={litert_version}", NUMPY], "downloading the aarch64 wheels")
  for w in sorted(os.listdir(wheels)):
    with zipfile.ZipFile(os.path.join(wheels, w)) as z:
      z.extractall(os.path.join(dest, "site"))
  shutil.rmtree(wheels)


def _namespaces() -> None:
  if not shutil.which("unshare"):
    raise Unavailable("ARM check unavailable: unshare not found (util-linux); it gives the "
                      "emulated LiteRT an ARM /proc/cpuinfo")
  _run(["unshare", "-m", "true"], "making a private mount namespace (needs root)")


def ready(root: Optional[str] = None) -> bool:
  """Whether the runtime is set up in `root` (default_dir()); installs nothing."""
  root = os.path.abspath(os.path.expanduser(root or default_dir()))
  return (os.path.exists(os.path.join(root, "ready.json")) and shutil.which("qemu-aarch64")
          is not None)


def prepare(root: Optional[str] = None) -> Runtime:
  """The emulated runtime in `root` (default_dir()), set up on first use (a few minutes, about
  100 MB; root installs Debian's qemu-user and enables its arm64 packages); a half-done set-up
  is never left in place, and a folder that is not a runtime is never replaced.

  Raises:
    Unavailable: one line saying what is missing (root, qemu-user, a package, the network).
  """
  root = os.path.abspath(os.path.expanduser(root or default_dir()))
  stamp = os.path.join(root, "ready.json")
  if os.path.exists(root) and not os.path.isdir(root):
    raise Unavailable(f"ARM check unavailable: {root} (--arm_dir or $PRUNE_ARM_DIR) is a file, "
                      "not a folder")
  if os.path.isdir(root) and os.listdir(root) and not os.path.exists(stamp):
    raise Unavailable(f"ARM check unavailable: {root} (--arm_dir or $PRUNE_ARM_DIR) holds files "
                      "but no ARM runtime (no ready.json); remove it or name an empty folder")
  qemu = _qemu()
  _namespaces()
  if not os.path.exists(stamp):
    try:
      os.makedirs(os.path.dirname(root), exist_ok=True)
    except OSError as e:
      raise Unavailable(f"ARM check unavailable: cannot create {os.path.dirname(root)} "
                        f"({e.strerror}); set $PRUNE_ARM_DIR") from None
    tmp = tempfile.mkdtemp(prefix=".arm-", dir=os.path.dirname(root))
    try:
      version = _sysroot(tmp)
      _wheels(tmp, version)
      with open(os.path.join(tmp, "cpuinfo"), "w") as f:
        f.write(CPUINFO)
      with open(os.path.join(tmp, "ready.json"), "w") as f:
        json.dump({"python": f"python{version}"}, f)
      if os.path.isdir(root):
        os.rmdir(root)  # Empty (checked above).
      os.replace(tmp, root)
    finally:
      shutil.rmtree(tmp, ignore_errors=True)
    logging.info("ARM runtime ready in %s.", root)
  with open(stamp) as f:
    python = json.load(f)["python"]
  return Runtime(root, qemu, os.path.join(root, "sysroot", "usr", "bin", python))


def command(rt: Runtime, args: Sequence[str]) -> List[str]:
  """`args` run by the arm64 python under qemu, with the ARM cpuinfo bound in a private mount
  namespace (the host's stays as it is for everything else)."""
  return ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /proc/cpuinfo && exec "$@"',
          rt.cpuinfo, rt.qemu, "-cpu", CPU, "-L", rt.sysroot, rt.python, *args]


