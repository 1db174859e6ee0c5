"""Tests for export/cpu.py: the CPU named beside every latency, read from cpuinfo."""

from export import cpu

XEON = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 avx512f avx512bw avx512_vnni amx_tile amx_int8

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
"""
AMD_AVX_ONLY = """processor\t: 0
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse2 fma sse4_1 sse4_2 avx f16c
"""
ARM = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes crc32 fphp asimdhp asimddp i8mm
CPU implementer\t: 0x41
CPU part\t: 0xd0b
"""


def _read(tmp_path, text, arch):
  path = tmp_path / "cpuinfo"
  path.write_text(text)
  return cpu.read(str(path), arch=arch)


def test_xeon_with_avx512_vnni_and_amx(tmp_path):
  c = _read(tmp_path, XEON, "x86_64")
  assert c.model == "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz"
  assert c.features == ("SSE4.1", "SSE4.2", "AVX", "AVX2", "FMA", "F16C", "AVX-512F",
                        "AVX-512BW", "AVX-512 VNNI", "AMX", "AMX-INT8")
  assert c.missing == () and c.has("AVX")


def test_avx_only_cpu_says_what_it_lacks(tmp_path):
  c = _read(tmp_path, AMD_AVX_ONLY, "x86_64")
  assert c.describe().startswith("AMD EPYC 7B12 (x86_64, ")
  assert c.describe().endswith("cores; SSE4.1, SSE4.2, AVX, FMA, F16C; no AVX2, AVX-512F)")


def test_arm_features_by_their_common_names(tmp_path):
  c = _read(tmp_path, ARM, "aarch64")
  assert c.features == ("NEON", "dotprod", "i8mm", "fp16")
  assert c.model == "ARM CPU part 0xd0b (implementer 0x41)"
  assert not c.has("AVX") and c.missing == ()


def test_this_machine_is_read(tmp_path):
  c = cpu.read()
  assert c.cores >= 1 and c.model and c.model != "unknown CPU"
  assert c.describe().startswith(c.model)
