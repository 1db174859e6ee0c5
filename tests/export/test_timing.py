"""Tests for export/litert.py and export/timing.py: delegate fallback, statistics, sizes."""

import gzip

import numpy as np
import pytest

from conftest import small_config, first
from export import litert, timing, tflite
from pipeline import data
from pipeline.planning import layer_rates
from pipeline.unstructured import prune


@pytest.fixture(scope="module")
def files(trained_cnn, mnist_small, tmp_path_factory):
  d = tmp_path_factory.mktemp("tfl")
  cfg = small_config(prune=True, pruning_rate=0.9, fine_tune_epochs=2)
  rates = layer_rates.for_model(trained_cnn, cfg)
  pruned = prune.prune(trained_cnn, mnist_small, cfg, str(d), rates).model
  rep = first(mnist_small.train, 50)
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
    assert t.load_ms > 0 and len(t.round_medians_ms) == 3
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


def _timing(name, round_medians_us):
  """A Timing built from one sample per round (so each round median is that sample)."""
  stats = timing.summarize([[int(us * 1000)] for us in round_medians_us])
  return timing.Timing(name=name, path="", delegate_requested="xnnpack", delegate="xnnpack",
                       fallback_reason="", threads=1, warmup_runs=0,
                       runs=len(round_medians_us), **stats, load_ms=0.0,
                       peak_rss_increase_mb=0.0, bytes=1, gzip_bytes=1)


def test_summarize_keeps_round_medians_in_order_and_counts_disturbed_rounds():
  quiet = [[16_000 + i for i in range(101)]] * 6  # ns: median 16.05 us.
  slow = [[30_000 + i for i in range(101)]] * 4  # Another process shares the core.
  s = timing.summarize(quiet[:3] + slow + quiet[3:])
  assert s["round_medians_ms"] == (0.01605,) * 3 + (0.03005,) * 4 + (0.01605,) * 3
  assert s["best_round_ms"] == pytest.approx(0.01605)
  assert s["rounds"] == 10 and s["disturbed_rounds"] == 4
  assert s["p50_ms"] == pytest.approx(0.016084)  # All samples: the slow ones move it.


def test_paired_speedup_survives_a_stretch_that_slows_both_files():
  """A disturbed stretch slows the reference and the file in the same rounds: the per-round
  ratio stays 4.0, while ratios of unpaired statistics move with the file's own noise."""
  ref_us = [80.0] * 60 + [120.0] * 40
  file_us = [20.0] * 60 + [30.0] * 40
  file_us[7] = 12.0  # One lucky round for the small model alone: biases its minimum low.
  ref, t = _timing("ref", ref_us), _timing("t", file_us)
  s = timing.speedup(ref, t)
  assert s.paired == pytest.approx(4.0) and s.rounds == 100
  assert s.p10 == pytest.approx(4.0) and s.p90 == pytest.approx(4.0)
  assert s.best_round == pytest.approx(80.0 / 12.0)  # Unpaired minimum: 6.67x, not 4x.
  assert s.describe() == "4.00x (p10-p90 4.00-4.00x)"


def test_paired_speedup_spread_is_the_10th_to_90th_percentile_of_round_ratios():
  ratios = np.linspace(2.0, 4.0, 101)
  ref, t = _timing("ref", 100.0 * ratios), _timing("t", [100.0] * 101)
  s = timing.speedup(ref, t)
  assert s.paired == pytest.approx(3.0)
  assert (s.p10, s.p90) == (pytest.approx(2.2), pytest.approx(3.8))


def test_pairing_needs_the_same_rounds():
  with pytest.raises(ValueError, match=r"^cannot pair t \(3 rounds\) with ref \(4 rounds\): "):
    timing.speedup(_timing("ref", [1, 2, 3, 4]), _timing("t", [1, 2, 3]))


def test_measure_rotates_the_order_of_files_each_round(files, monkeypatch):
  """Round r starts with file r mod n: seen from LiteRT's own invoke calls, in order."""
  from ai_edge_litert import interpreter as litert_interpreter
  seen = []
  real_invoke = litert_interpreter.Interpreter.invoke
  names = {id(None): None}

  def recording_invoke(self):
    seen.append(names.get(id(self)))
    return real_invoke(self)
  real_open = litert.open_model

  def open_and_name(path, **kw):
    opened = real_open(path, **kw)
    names[id(opened.interpreter)] = path
    return opened
  monkeypatch.setattr(litert_interpreter.Interpreter, "invoke", recording_invoke)
  monkeypatch.setattr(litert, "open_model", open_and_name)
  chosen = dict(list(files.items())[:3])
  timing.measure(chosen, warmup_runs=1, runs=3, rounds=3)
  timed = seen[3:]  # After one warm-up invoke per file.
  paths = list(chosen.values())
  assert timed == paths + paths[1:] + paths[:1] + paths[2:] + paths[:2]


def test_measured_speedups_pair_each_file_with_the_reference(files):
  ts = {t.name: t for t in timing.measure(files, warmup_runs=2, runs=40, rounds=4)}
  ref, t = ts["baseline_float32"], ts["pruned_int8"]
  assert len(t.round_medians_ms) == len(ref.round_medians_ms) == 4
  ratios = np.array(ref.round_medians_ms) / np.array(t.round_medians_ms)
  assert timing.speedup(ref, t).paired == pytest.approx(float(np.median(ratios)))
  md = timing.to_markdown(list(ts.values()), "baseline_float32")
  assert "| baseline_float32 | xnnpack | 1 |" in md
  assert "1.00x (p10-p90 1.00-1.00x)" in md  # The reference against itself, round by round.
  assert "median over 4 interleaved rounds" in md


def test_summarize_refuses_no_samples():
  with pytest.raises(ValueError, match="^no samples to summarize$"):
    timing.summarize([[], []])
