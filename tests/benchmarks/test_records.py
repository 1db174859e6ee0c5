"""benchmarks/records.py: a record's recipe is its flagfile's own lines, and its verdict says
met, or by how much not."""

import pytest

from absl import flags

from benchmarks import records
from conftest import small_config
from pipeline import flags as pipeline_flags  # noqa: F401  (defines the flags parsed)


@pytest.fixture(autouse=True)
def parsed_flags():
  if not flags.FLAGS.is_parsed():
    flags.FLAGS(["test"])


def test_a_flagfiles_own_lines_become_config_values(tmp_path):
  path = tmp_path / "r.flags"
  path.write_text("# comment\n--flagfile=configs/fashion_mnist.flags\n--structured_rate=0.5\n"
                  "--distill\n--noprune\n--export_formats=float32,int8\n")
  assert records.flagfile_values(str(path)) == {
      "structured_rate": 0.5, "distill": True, "prune": False,
      "export_formats": ("float32", "int8")}


def test_every_record_has_both_variants_with_its_recipe():
  plans = records.variants(small_config())
  assert len(plans) == 2 * len(records.RECORDS)
  _, cfg, rec = plans["record_sparsity98_distill"]
  assert (cfg.distill, cfg.prune, cfg.pruning_rate, rec.name) == (True, True, 0.98, "sparsity98")
  assert not plans["record_sparsity98"][1].distill


def _row(name, acc, speedup, gate="ok"):
  return {"name": name, "test_accuracy": acc, "speedup": speedup, "gate": gate,
          "gzip_ratio": 1.0, "sparsity": 0.0, "model": "m"}


def test_verdicts_name_the_file_and_the_shortfall():
  speed = records.RECORDS[0]
  rows = [_row("a_float32", 0.905, 4.2), _row("a_int8", 0.90, 6.0, gate="FAILED"),
          _row("a_dynamic_int8", 0.85, 7.0)]
  assert records.verdict(speed, rows, 0.91, "R") == (
      "R: a_float32 4.20x at -0.50 points (target >= 5x lower latency than the dense float32 "
      "file, within 1.0 point): NOT met: 0.80x short.")
  assert records.verdict(speed, [_row("a", 0.905, 5.5)], 0.91, "R").endswith(": met.")
  assert records.verdict(speed, [_row("b", 0.85, 9.0)], 0.91, "R") == (
      "R: NOT met: the most accurate file, b, is -6.00 points (9.00x), 5.00 points outside "
      "the target's 1.")
