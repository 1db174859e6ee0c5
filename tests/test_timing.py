"""Tests for export/litert.py and export/timing.py: delegate fallback, statistics, sizes."""

import gzip

import numpy as np
import pytest

from conftest import small_config
from export import litert, timing, tflite
from pipeline import data, prune


@pytest.fixture(scope="module")
def files(trained_cnn, mnist_small, tmp_path_factory):
  d = tmp_path_factory.mktemp("tfl")
  cfg = small_config(prune=True, pruning_rate=0.9, fine_tune_epochs=2)
  pruned = prune.prune(trained_cnn, mnist_small, cfg, str(d)).model
  rep = data.scaled(mnist_small.x_train[:50])
  exports = tflite.export_tflite({"baseline": trained_cnn, "pruned": pruned},
                                 {"baseline": (["float32"], False), "pruned": (["int8"], True)},
                                 str(d), rep)
  return {e.name: e.path for e in exports}


def test_sparse_int8_falls_back_to_builtin_and_says_why(files):
  opened = litert.open_model(files["pruned_int8_sparse"])
  assert opened.delegate == "builtin"
  assert opened.fallback_reason.startswith("XNNPACK failed to prepare")
  dense = litert.open_model(files["pruned_int8"])
  assert dense.delegate == "xnnpack" and dense.fallback_reason is None


def test_measure_reports_stats_sizes_and_fallback(files):
  ts = timing.measure(files, threads=(1,), delegates=("xnnpack", "builtin"), warmup_runs=2,
                      runs=30, rounds=3)
  assert [(t.name, t.delegate_requested) for t in ts] == [
      (n, d) for n in files for d in ("xnnpack", "builtin")]
  for t in ts:
    assert t.runs == 30 and t.threads == 1
    assert 0 < t.p50_ms <= t.p90_ms <= t.p99_ms
    assert t.std_ms >= 0 and t.load_ms > 0 and t.peak_rss_increase_mb >= 0
    with open(t.path, "rb") as f:
      content = f.read()
    assert t.bytes == len(content) and t.gzip_bytes == len(gzip.compress(content, 9))
  fell_back = [t for t in ts if t.delegate != t.delegate_requested]
  assert [(t.name, t.delegate) for t in fell_back] == [("pruned_int8_sparse", "builtin")]
  assert fell_back[0].fallback_reason


def test_unknown_delegate_is_refused(files):
  with pytest.raises(ValueError, match=r"^delegate=gpu: unknown; valid: xnnpack, builtin$"):
    litert.open_model(files["baseline_float32"], delegate="gpu")


def test_quantize_round_trip():
  detail = {"dtype": np.int8, "quantization": (1 / 255, -128)}
  x = np.linspace(0, 1, 11, dtype=np.float32)
  q = litert.quantize_input(x, detail)
  assert q.dtype == np.int8 and q.min() == -128 and q.max() == 127
  np.testing.assert_allclose(litert.dequantize_output(q, detail), x, atol=1 / 255)


def test_summarize_best_round_ignores_a_disturbed_stretch():
  quiet = [[16_000 + i for i in range(100)]] * 6  # ns: median 16.0495 us
  slow = [[30_000 + i for i in range(100)]] * 4  # Another process shares the core.
  s = timing.summarize(quiet + slow)
  assert s["best_round_ms"] == pytest.approx(0.0160495)
  assert s["rounds"] == 10 and s["disturbed_rounds"] == 4
  assert s["p50_ms"] == pytest.approx(0.016083)  # Mixed in: moves as the disturbed share grows.
  more_slow = timing.summarize(quiet[:3] + slow * 2)
  assert more_slow["best_round_ms"] == s["best_round_ms"]
  assert more_slow["p50_ms"] > 0.029


def test_speedup_is_the_ratio_of_best_rounds(files):
  ts = {t.name: t for t in timing.measure(files, warmup_runs=2, runs=40, rounds=4)}
  ref, t = ts["baseline_float32"], ts["pruned_int8"]
  assert t.rounds == 4 and 0 <= t.disturbed_rounds <= 3
  assert t.best_round_ms <= t.p90_ms
  assert timing.speedup(ref, t) == pytest.approx(ref.best_round_ms / t.best_round_ms)
  md = timing.to_markdown(list(ts.values()), "baseline_float32")
  assert f"| {timing.speedup(ref, t):.2f}x | {ref.p50_ms / t.p50_ms:.2f}x |" in md
  assert "lowest of the 4 interleaved rounds' medians" in md


def test_summarize_refuses_no_samples():
  with pytest.raises(ValueError, match="^no samples to summarize$"):
    timing.summarize([[], []])
