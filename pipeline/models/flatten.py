"""Inline nested models: `Sequential([Rescaling, MobileNetV2(include_top=False), ...])`, the
usual way to build a transfer-learning classifier, becomes one flat graph of the same layers.

TF-MOT wraps only top-level layers and the structured surgery reads one graph, so a backbone
nested as a single layer would be left whole by both. Inlining reuses the layer objects (the
same weights); nothing is rebuilt or retrained.
"""

import tf_keras as keras


def node_entries(node: list) -> list:
  """The [layer name, node index, tensor index, kwargs] entries of one inbound node of a
  tf_keras config. A TFOpLambda (`x + 3.0`, as in a hard-swish) lists its one input tensor
  without the enclosing list."""
  return [node] if node and isinstance(node[0], str) else node


def clone_with_weights(model: keras.Model, clone_function=None) -> keras.Model:
  """A new model of the same graph with `model`'s weights copied (layers rebuilt by
  `clone_function` when given, as keras.models.clone_model takes it); `model` is untouched."""
  copy = keras.models.clone_model(model)
  copy.set_weights(model.get_weights())
  if clone_function is None:
    return copy
  return keras.models.clone_model(copy, clone_function=clone_function)


def as_functional(model: keras.Model) -> keras.Model:
  """A functional model sharing `model`'s layers (Sequential models have no explicit graph)."""
  if not isinstance(model, keras.Sequential):
    return model
  inp = keras.Input(shape=model.input_shape[1:], name=model.layers[0].name + "_input")
  x = inp
  for layer in model.layers:
    x = layer(x)
  return keras.Model(inp, x, name=model.name)


def has_nested(model: keras.Model) -> bool:
  return any(isinstance(l, keras.Model) for l in model.layers)


def flatten(model: keras.Model) -> keras.Model:
  """`model` with every nested model inlined (returned unchanged if there is none).

  Raises:
    ValueError: a graph this cannot replay (a layer with several outputs).
  """
  if not has_nested(model):
    return model
  inputs = [keras.Input(shape=t.shape[1:], dtype=t.dtype, name=f"input_{i}" if i else "image")
            for i, t in enumerate(model.inputs)]
  outputs = _replay(model, inputs)
  return keras.Model(inputs, outputs, name=model.name)


def _call(layer, args, kwargs=None, training=None):
  """Calls one layer; a nested model is replayed, passing on how it was called (the Keras
  guide's `base_model(x, training=False)` keeps the backbone's BatchNorm in inference mode)."""
  kwargs = dict(kwargs or {})
  if training is not None and "training" not in kwargs:
    kwargs["training"] = training
  if isinstance(layer, keras.Model):
    return _replay(layer, args, kwargs.get("training"))
  return layer(args[0] if len(args) == 1 else args, **kwargs)


def _replay(model: keras.Model, inputs, training=None):
  """Calls `model`'s layers on `inputs` in its own order; returns the output tensor(s)."""
  if isinstance(model, keras.Sequential):
    x = inputs[0]
    for layer in model.layers:
      x = _call(layer, [x], training=training)
    return x
  config = model.get_config()
  tensors = {(name, node, index): t
             for (name, node, index), t in zip(config["input_layers"], inputs)}
  for lc in config["layers"]:
    if lc["class_name"] == "InputLayer":
      continue
    layer = model.get_layer(lc["name"])
    # Keras numbers a nested model's calls from 1: its node 0 is its own construction.
    offset = 1 if isinstance(layer, keras.Model) else 0
    for node_index, node in enumerate(lc["inbound_nodes"], start=offset):
      node = node_entries(node)
      args = [tensors[(n[0], n[1], n[2])] for n in node]
      kwargs = node[0][3] if node and len(node[0]) > 3 else {}
      out = _call(layer, args, kwargs, training)
      if isinstance(out, (list, tuple)):
        raise ValueError(f"layer {lc['name']} has several outputs; cannot inline it")
      tensors[(lc["name"], node_index, 0)] = out
  outs = [tensors[(n[0], n[1], n[2])] for n in config["output_layers"]]
  return outs[0] if len(outs) == 1 else outs
