"""Tests for pipeline/data/tfds_source.py with tfds.testing.mock_data (TFDS's own way to run its
loaders without a download): any dataset by name, its splits or a split of train, errors."""

import numpy as np
import pytest

from conftest import assert_message, first, small_config
from pipeline import data
from pipeline.data import tfds_source

tfds = pytest.importorskip("tensorflow_datasets")


@pytest.fixture
def prepared(monkeypatch):
  monkeypatch.setattr(tfds_source, "prepared", lambda name, data_dir: True)


def test_cifar10_with_its_own_test_split(prepared, monkeypatch):
  monkeypatch.setattr(tfds_source, "_split_names", lambda b: ("train", "test"))
  with tfds.testing.mock_data(num_examples=50):
    ds = data.load_dataset(small_config(dataset="cifar10", max_train_examples=0))
    x = first(ds.test)
  assert ds.image_shape == (32, 32, 3) and ds.num_classes == 10
  assert (len(ds.train), len(ds.validation), len(ds.test)) == (45, 5, 50)
  assert x.shape == (50, 32, 32, 3) and x.max() <= 255
  assert "test: the dataset's own split (fixed)" in ds.notes


def test_no_test_split_holds_out_a_fixed_stratified_share(prepared):
  with tfds.testing.mock_data(num_examples=100):
    ds = data.load_dataset(small_config(dataset="beans", image_size="48,48",
                                        max_train_examples=0))
    again = data.load_dataset(small_config(dataset="beans", image_size="48,48", seed=5,
                                           max_train_examples=0))
    x, x_again = first(ds.test), first(again.test)
  assert len(ds.test) == 20 and len(ds.train) + len(ds.validation) == 80
  np.testing.assert_array_equal(x, x_again)
  assert ds.class_names == ("angular_leaf_spot", "bean_rust", "healthy")
  assert x.shape == (20, 48, 48, 3)


def test_images_of_varying_size_need_image_size(prepared):
  with tfds.testing.mock_data(num_examples=10):
    with pytest.raises(ValueError) as e:
      data.load_dataset(small_config(dataset="tf_flowers"))
    ds = data.load_dataset(small_config(dataset="tf_flowers", image_size="32,32",
                                        max_train_examples=0))
    x = first(ds.train, 3)
  assert_message(str(e.value), "--dataset=tf_flowers:", "different sizes", "--image_size")
  assert x.shape == (3, 32, 32, 3)


def test_unknown_name_suggests_close_ones():
  with pytest.raises(data.DataNotFoundError) as e:
    data.load_dataset(small_config(dataset="cifr10"))
  assert str(e.value).startswith("--dataset=cifr10: no such dataset (mnist, fashion_mnist, "
                                 "folder, or a TFDS name); did you mean cifar10")


def test_not_prepared_while_offline_is_one_line(monkeypatch, tmp_path):
  monkeypatch.setattr(tfds_source, "online", lambda: False)
  with pytest.raises(data.DataNotFoundError) as e:
    data.load_dataset(small_config(dataset="cifar10", data_dir=str(tmp_path)))
  assert_message(str(e.value), "--dataset=cifar10:", f"--data_dir={tmp_path}", "offline",
                 "tfds build cifar10")
