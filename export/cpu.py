"""Which CPU measured a latency: model name, cores, and the ISA features that pick the kernels.

XNNPACK chooses its kernels by what the CPU offers (AVX2 and FMA for float, AVX-512 VNNI or AMX
for int8 on x86; NEON dot-product, i8mm and fp16 arithmetic on ARM), and a speed-up measured on
one CPU can be 3x off on another. So every report names the CPU that timed it, read here from
the machine.
"""

import dataclasses
import os
import platform
from typing import Dict, Optional, Tuple

# /proc/cpuinfo flag -> the name people know it by, in the order a reader wants them.
X86_FEATURES = {
    "sse4_1": "SSE4.1", "sse4_2": "SSE4.2", "avx": "AVX", "avx2": "AVX2", "fma": "FMA",
    "f16c": "F16C", "avx512f": "AVX-512F", "avx512bw": "AVX-512BW", "avx512_vnni": "AVX-512 VNNI",
    "avx_vnni": "AVX-VNNI", "avx512_bf16": "AVX-512 BF16", "avx512_fp16": "AVX-512 FP16",
    "amx_tile": "AMX", "amx_int8": "AMX-INT8",
}
ARM_FEATURES = {
    "asimd": "NEON", "asimddp": "dotprod", "i8mm": "i8mm", "asimdhp": "fp16", "sve": "SVE",
    "sve2": "SVE2", "bf16": "BF16",
}


@dataclasses.dataclass(frozen=True)
class CPU:
  model: str
  arch: str  # platform.machine(): x86_64, aarch64, ...
  cores: int  # Logical CPUs this process may use.
  features: Tuple[str, ...]  # Kernel-deciding ISA features present, by their common names.
  missing: Tuple[str, ...]  # The headline ones absent (e.g. AVX-512F on an AVX2 machine).

  def describe(self) -> str:
    """One line, e.g. 'AMD EPYC (x86_64, 2 cores; SSE4.2, AVX, AVX2, FMA; no AVX-512F)'."""
    feats = ", ".join(self.features) or "no SIMD features read"
    absent = f"; no {', '.join(self.missing)}" if self.missing else ""
    return f"{self.model} ({self.arch}, {self.cores} cores; {feats}{absent})"

  def has(self, feature: str) -> bool:
    return feature in self.features


def _fields(text: str) -> Dict[str, str]:
  """The first processor's 'key: value' lines of /proc/cpuinfo."""
  out = {}
  for line in text.splitlines():
    if not line.strip():
      if out:
        break
      continue
    key, _, value = line.partition(":")
    out.setdefault(key.strip(), value.strip())
  return out


def read(cpuinfo: str = "/proc/cpuinfo", arch: Optional[str] = None) -> CPU:
  """Reads this machine's CPU (or the given cpuinfo file, for tests)."""
  try:
    with open(cpuinfo) as f:
      fields = _fields(f.read())
  except OSError:
    fields = {}
  arch = arch or platform.machine() or "unknown"
  flags = set((fields.get("flags") or fields.get("Features") or "").split())
  table = ARM_FEATURES if arch in ("aarch64", "arm64") or "asimd" in flags else X86_FEATURES
  features = tuple(name for flag, name in table.items() if flag in flags)
  headline = ("NEON", "dotprod", "i8mm", "fp16") if table is ARM_FEATURES else (
      "AVX", "AVX2", "FMA", "AVX-512F")
  missing = tuple(h for h in headline if h not in features) if flags else ()
  model = (fields.get("model name") or fields.get("Hardware") or fields.get("Processor")
           or platform.processor() or "unknown CPU")
  if table is ARM_FEATURES and "model name" not in fields and "CPU part" in fields:
    model = f"ARM CPU part {fields['CPU part']} (implementer {fields.get('CPU implementer', '?')})"
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  return CPU(model=" ".join(model.split()), arch=arch, cores=int(cores or 1), features=features,
             missing=missing)
