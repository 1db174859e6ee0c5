"""Tests for pipeline/planning/allocate.py: the greedy move of least loss per unit gained."""

from pipeline.planning import allocate


def test_the_cheapest_move_per_unit_gained_wins():
  ladders = {"a": [(0, 0.0), (1, 0.5)], "b": [(0, 0.0), (1, 0.1)]}
  assert allocate.cheapest(ladders, {"a": 0, "b": 0}) == ("b", 1)


def test_it_looks_past_a_costly_rung_to_a_cheap_one():
  # b's first rung costs 0.3 per unit, but its second costs 0.3 / 4 per unit from b's start.
  ladders = {"a": [(0, 0.0), (1, 0.2)], "b": [(0, 0.0), (1, 0.3), (4, 0.3)]}
  assert allocate.cheapest(ladders, {"a": 0, "b": 0}) == ("b", 2)


def test_scale_weighs_each_unit_and_frozen_groups_stay():
  ladders = {"big": [(0, 0.0), (0.5, 0.1)], "small": [(0, 0.0), (0.5, 0.05)]}
  at = {"big": 0, "small": 0}
  assert allocate.cheapest(ladders, at, scale={"big": 1000, "small": 10}) == ("big", 1)
  assert allocate.cheapest(ladders, at, frozen=["big"], scale={"big": 1000, "small": 10}) == (
      "small", 1)


def test_ties_go_to_the_preferred_move_and_nothing_to_gain_is_none():
  flat = {"a": [(0, 0.0), (1, 0.0), (2, 0.0)], "b": [(0, 0.0), (1, 0.0)]}
  assert allocate.cheapest(flat, {"a": 0, "b": 0}, prefer=lambda g, j: -j) in (("a", 1), ("b", 1))
  assert allocate.cheapest(flat, {"a": 0, "b": 0}, prefer=lambda g, j: j) == ("a", 2)
  assert allocate.cheapest({"a": [(0, 0.0), (0, 0.1)]}, {"a": 0}) is None  # Gains nothing.
  assert allocate.cheapest(flat, {"a": 2, "b": 1}) is None  # Every group at its top rung.
