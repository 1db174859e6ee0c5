"""Which file to ship: the fastest and the smallest within the accuracy budget, or why none."""

from export import recommend
from export.recommend import Candidate

REF = "baseline_float32"
FILES = [Candidate(REF, 0.0, 1.0, 1.0),
         Candidate("pruned_float32", -0.004, 2.9, 4.0),
         Candidate("pruned_int8", -0.009, 2.1, 14.0),
         Candidate("pruned_int8_sparse", -0.009, 0.6, 20.0, usable=False),  # Failed its gate.
         Candidate("pruned_dynamic_int8", -0.012, 3.5, 15.0)]  # Outside one point.


def test_fastest_and_smallest_within_the_budget_skip_failed_and_too_inaccurate_files():
  fastest, smallest = recommend.choose(FILES[1:], 1.0)
  assert (fastest.name, smallest.name) == ("pruned_float32", "pruned_int8")
  fastest, smallest = recommend.choose(FILES[1:], 1.5)
  assert (fastest.name, smallest.name) == ("pruned_dynamic_int8", "pruned_dynamic_int8")


def test_the_lines_name_files_figures_and_the_default_budget():
  lines = recommend.lines(FILES, "on this CPU (X)", REF, None)
  assert lines[0] == ("Which file to ship, on this CPU (X): the fastest and the smallest within "
                      "1 point of the baseline's test accuracy (the default; "
                      "--max_accuracy_drop sets it):")
  assert lines[1] == ("- fastest: pruned_float32: 2.90x the speed of baseline_float32, 4.0x "
                      "smaller (gzip), -0.40 points of test accuracy.")
  assert lines[2].startswith("- smallest: pruned_int8: 2.10x")
  same = recommend.lines(FILES, "t", REF, 1.5)
  assert "--max_accuracy_drop)" in same[0] and "(the same file)" in same[2]


def test_no_qualifying_file_says_how_far_the_best_one_is():
  lines = recommend.lines(FILES, "t", REF, 0.1)
  assert lines[1].startswith("- none qualifies: the most accurate, pruned_float32, is -0.40 "
                             "points; ship baseline_float32"), lines
