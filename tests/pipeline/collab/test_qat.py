"""Tests for pipeline/collab/qat.py: quantization-aware fine-tuning keeps pruning's zeros in
the int8 file, rescues a model post-training quantization breaks, and saves and loads."""

import numpy as np

from conftest import first, small_config
from export import graph, litert, tflite
from pipeline import data as data_lib
from pipeline.collab import qat
from pipeline.models import train

import tf_keras as keras  # pylint: disable=g-bad-import-order


def test_pqat_keeps_the_zeros_in_the_int8_file_and_saves_and_loads(pruned_cnn, mnist_small,
                                                                   tmp_path):
  cfg = small_config(prune=True, quantize_aware=True, qat_epochs=1, qat_learning_rate=1e-4)
  result = qat.quantize_aware(pruned_cnn, mnist_small, cfg, str(tmp_path), pruned=True,
                              clustered=False)
  assert result.scheme == "prune-preserving (PQAT)"
  assert list(result.output_only) == ["rescale"]  # Rescaling: output quantized only.
  content = tflite.convert(result.model, "int8", representative=first(mnist_small.train, 50))
  g = graph.read(content, qat.wrapped_names(["conv1", "conv2", "dense1", "classifier"]))
  stored = {l.name: l.sparsity for l in g.layers}
  assert stored["quant_conv2"] >= 0.8 and stored["quant_dense1"] >= 0.8, stored
  path = str(tmp_path / qat.WEIGHTS)
  qat.save(result.model, path)
  again = qat.load(pruned_cnn, path, pruned=True, clustered=False)
  x = first(mnist_small.test, 64)
  np.testing.assert_array_equal(again.predict(x, verbose=0), result.model.predict(x, verbose=0))


def _hostile(mnist_small, factor=3000.0):
  """A Conv-BatchNorm-ReLU CNN whose first BatchNorm's channel 0 is `factor` times larger and
  the next conv's weights for it `factor` times smaller: the same function in float, but one
  channel sets the first activation's int8 range and the other channels get none of it."""
  keras.utils.set_random_seed(0)
  layers = keras.layers
  model = keras.Sequential([
      keras.Input((28, 28, 1)), layers.Rescaling(1 / 255), layers.Conv2D(16, 3, name="c1"),
      layers.BatchNormalization(momentum=0.9, name="bn1"), layers.ReLU(),
      layers.MaxPooling2D(), layers.Conv2D(32, 3, name="c2"),
      layers.BatchNormalization(momentum=0.9, name="bn2"), layers.ReLU(),
      layers.MaxPooling2D(), layers.Flatten(), layers.Dense(10, activation="softmax")])
  model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
  model.fit(first(mnist_small.train), mnist_small.train.labels, epochs=5, batch_size=64,
            verbose=0)
  g, b, m, v = model.get_layer("bn1").get_weights()
  g[0], b[0] = g[0] * factor, b[0] * factor
  model.get_layer("bn1").set_weights([g, b, m, v])
  k, bias = model.get_layer("c2").get_weights()
  k[:, :, 0, :] /= factor
  model.get_layer("c2").set_weights([k, bias])
  return model


def test_qat_int8_beats_post_training_int8_on_a_model_built_to_break_it(mnist_small, tmp_path):
  model = _hostile(mnist_small)
  x, y = first(mnist_small.test), mnist_small.test.labels
  float_acc = train.accuracy_on(model, x, y)
  rep = data_lib.sample(mnist_small.train, 200)[0]

  def int8_accuracy(m):
    return float(np.mean(litert.predict(litert.open_model(tflite.convert(
        m, "int8", representative=rep)), x).argmax(-1) == y))

  ptq = int8_accuracy(model)
  cfg = small_config(quantize_aware=True, prune=True, qat_epochs=2, qat_learning_rate=1e-4)
  result = qat.quantize_aware(model, mnist_small, cfg, str(tmp_path), pruned=False,
                              clustered=False)
  assert result.scheme == "default 8-bit"
  assert "bn1" not in result.output_only  # Folded into c1 by TF-MOT's transforms.
  qat_int8 = int8_accuracy(result.model)
  assert float_acc > 0.8 and ptq < float_acc - 0.2, (float_acc, ptq)
  assert qat_int8 > ptq + 0.2 and qat_int8 > float_acc - 0.05, (float_acc, ptq, qat_int8)


def test_a_run_clusters_then_quantizes_and_reports_both_int8_files(trained_cnn, mnist_small,
                                                                    tmp_path):
  import pipeline  # pylint: disable=g-import-not-at-top
  arrays = [(s.images, s.labels) for s in (mnist_small.train, mnist_small.validation,
                                           mnist_small.test)]
  result = pipeline.prune(trained_cnn, *arrays[:2], test_ds=arrays[2], pruning_rate=0.8,
                          cluster=8, cluster_epochs=1, quantize_aware=True, qat_epochs=1,
                          qat_learning_rate=1e-4, fine_tune_epochs=2, batch_size=64,
                          export_formats="int8", benchmark_runs=5,
                          workdir=str(tmp_path / "run"))
  r = result.report
  assert [e["name"] for e in r["exports"]] == ["baseline_float32", "pruned_int8",
                                              "pruned_int8_sparse", "qat_int8", "qat_int8_sparse"]
  assert all(e["gate"] == "ok" for e in r["exports"]), [e["gate_reason"] for e in r["exports"]]
  qat_row = next(e for e in r["exports"] if e["name"] == "qat_int8")
  assert qat_row["sparsity"] >= 0.8 - 1e-3  # Pruning's zeros, through clustering and QAT.
  assert r["pruned"]["qat"]["scheme"] == "cluster-preserving with sparsity (CQAT)"
  assert {n: v["distinct"] for n, v in r["pruned"]["cluster"]["layers"].items()} == {
      "conv2": 8, "dense1": 8}
  md = open(tmp_path / "run" / "report.md").read()
  assert "Clustering (TF-MOT, k-means++, zeros kept): 8 values per kernel" in md
  assert "int8 files: qat_int8 " in md and " against pruned_int8 " in md
