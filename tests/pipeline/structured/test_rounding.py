"""Kept channel counts rounded to the kernels' channel tile."""

import numpy as np

from pipeline.structured import rounding


def _top(scores, n):
  return np.sort(np.argsort(-scores, kind="stable")[:n])


def test_rounds_to_the_nearest_multiple_keeping_the_best_channels():
  rng = np.random.default_rng(0)
  scores = {0: rng.random(48), 1: rng.random(96), 2: rng.random(16)}
  keep = {0: _top(scores[0], 29), 1: _top(scores[1], 58), 2: np.arange(16)}
  out, whole = rounding.round_kept(keep, scores, {0: 48, 1: 96, 2: 16}, 8)
  assert [len(out[g]) for g in (0, 1, 2)] == [32, 56, 16]  # 29 -> 32, 58 -> 56, unpruned kept.
  np.testing.assert_array_equal(out[0], _top(scores[0], 32))
  np.testing.assert_array_equal(out[1], _top(scores[1], 56))
  assert not whole


def test_never_below_one_tile_or_min_channels_nor_above_the_group():
  scores = {0: np.arange(20.0), 1: np.arange(40.0), 2: np.arange(64.0)}
  out, whole = rounding.round_kept({0: np.arange(17, 20), 1: np.arange(1, 40),
                                    2: np.arange(60, 64)}, scores, {0: 20, 1: 40, 2: 64}, 8,
                                   min_channels=10)
  assert [len(out[g]) for g in (0, 1, 2)] == [16, 40, 16]  # 3 -> 16 (>= 10), 39 -> 40, 4 -> 16.
  assert whole == {1: "39 of 40 channels kept, rounded to a multiple of --channel_multiple=8, is "
                      "all of them"}


def test_groups_no_wider_than_the_tile_stay_whole_with_the_reason():
  scores = {0: np.arange(8.0)}
  out, whole = rounding.round_kept({0: np.array([3, 5, 6, 7])}, scores, {0: 8}, 8)
  np.testing.assert_array_equal(out[0], np.arange(8))
  assert whole[0] == ("8 channels, no more than --channel_multiple=8: removing some would save "
                      "no time")


def test_multiple_one_is_off():
  keep = {0: np.array([1, 4, 6])}
  out, whole = rounding.round_kept(keep, {0: np.arange(8.0)}, {0: 8}, 1)
  assert out is keep and not whole
