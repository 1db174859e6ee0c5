"""--remove_blocks: residual blocks removed exactly, ranked by validation loss, fine-tuned."""

import numpy as np
import pytest

from conftest import assert_message, small_config
from pipeline.structured import blocks
from pipeline import config
from pipeline import job
from pipeline.models import architectures as models

import tf_keras as keras  # pylint: disable=g-bad-import-order


def _mobilenet():
  model = models.build_model(config.Config(model="mobilenet_v2", alpha=0.35), (32, 32, 3), 4)
  rng = np.random.default_rng(0)  # BatchNorm statistics a trained model would have.
  for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      g, b, m, v = layer.get_weights()
      layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.2, b.shape),
                         rng.normal(0, 0.2, m.shape), rng.uniform(0.5, 1.5, v.shape)])
  return model


def test_mobilenet_v2_residual_blocks_are_removed_exactly():
  model = _mobilenet()
  found = blocks.find(model)
  assert [b.name for b in found] == ["block_2_add", "block_4_add", "block_5_add", "block_7_add",
                                     "block_8_add", "block_9_add", "block_11_add",
                                     "block_12_add", "block_14_add", "block_15_add"]
  assert all(b.exact and len(b.layers) == 9 for b in found)
  assert found[0].start == "block_1_project_BN"
  x = np.random.default_rng(1).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
  small = blocks.remove(model, found[:3])
  assert small.count_params() < model.count_params()
  assert not {l.name for l in small.layers} & {n for b in found[:3] for n in b.layers}
  same = np.max(np.abs(small.predict(x, verbose=0) - blocks.zeroed(model, found[:3]).predict(
      x, verbose=0)))
  assert same < 1e-5
  # And the removal changes the model: the branches did something (compared inside, where
  # an untrained MobileNet's output does not yet wash it out).
  def inside(m):
    return keras.Model(m.inputs, m.get_layer("block_6_expand").output).predict(x, verbose=0)
  assert np.max(np.abs(inside(small) - inside(model))) > 1e-2
  assert np.max(np.abs(inside(small) - inside(blocks.zeroed(model, found[:3])))) < 1e-4


def test_sequential_layers_of_unchanged_shape_are_inexact_blocks():
  model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, name="a"),
                            keras.layers.Dense(16, name="b"), keras.layers.Dense(3, name="out")])
  assert [(b.name, b.start, b.exact) for b in blocks.find(model)] == [("b", "a", False)]
  small = blocks.remove(model, blocks.find(model))
  assert [l.name for l in small.layers][1:] == ["a", "out"]
  assert blocks.find(models.build_model(config.Config(), (28, 28, 1), 10)) == []  # small_cnn


def test_too_many_blocks_or_with_a_speed_target_is_one_line():
  with pytest.raises(ValueError) as e:
    job.preflight(small_config(remove_blocks=1))
  assert_message(str(e.value), "--remove_blocks=1:", "small_cnn", "0 removable block")
  with pytest.raises(ValueError) as e:
    job.preflight(small_config(remove_blocks=1, target_speedup=2))
  assert_message(str(e.value), "--remove_blocks=1:", "--target_speedup")


def test_the_stage_ranks_removes_and_fine_tunes(tmp_path):
  from pipeline.data import shapes  # pylint: disable=g-import-not-at-top
  from pipeline import data  # pylint: disable=g-import-not-at-top
  folder = shapes.write_folder(str(tmp_path / "photos"), shapes.CLASSES[:3], 20, 32)
  cfg = small_config(dataset="folder", data_dir=folder, model="mobilenet_v2", alpha=0.35,
                     remove_blocks=2, fine_tune_epochs=1)
  ds = data.load_dataset(cfg)
  model = models.build_model(cfg, ds.input_shape, ds.num_classes)
  small, row = blocks.remove_blocks(model, ds, cfg, str(tmp_path / "run"))
  assert row["candidates"] == 10 and len(row["removed"]) == 2
  costs = blocks.rank(model, blocks.find(model), *data.sample(ds.validation, 1000, cfg.seed))
  assert [r["block"] for r in row["removed"]] == sorted(costs, key=costs.get)[:2]
  assert row["max_abs_diff_vs_zeroed"] < 1e-4
  assert (tmp_path / "run" / "logs" / "blocks").is_dir()
  assert len(small.layers) == len(model.layers) - 18
