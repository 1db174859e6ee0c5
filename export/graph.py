"""Reads a .tflite file's graph: per-layer weights, the sparsity actually stored, and MACs.

Works on any .tflite file. Dense-encoded weights are counted directly; sparse-encoded ones
(EXPERIMENTAL_SPARSITY, fed to the layer through a DENSIFY op) hold only their stored values,
so sparsity = 1 - non-zero stored values / dense size.
"""

import dataclasses
from typing import List, Optional, Sequence

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils

_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
_DTYPES = {schema.TensorType.FLOAT32: np.float32, schema.TensorType.FLOAT16: np.float16,
           schema.TensorType.INT8: np.int8, schema.TensorType.UINT8: np.uint8,
           schema.TensorType.INT32: np.int32}
_WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
# Ops that only decode a constant weight on the way to the layer.
_DECODERS = ("DENSIFY", "DEQUANTIZE")


@dataclasses.dataclass(frozen=True)
class Layer:
  op: str
  name: str  # The Keras layer name where the tensor names carry it, else the tensor name.
  weights: int  # Dense size of the weight tensor.
  zeros: int
  sparse_encoded: bool
  dtype: str
  macs: int  # Multiply-accumulates per inference (batch 1).
  shape: tuple = ()  # Weight tensor shape as stored ([out, kh, kw, in] for CONV_2D).
  scales: Optional[tuple] = None  # Quantization scales of int8 weights (one per channel or one).
  # The stored weights, flat, when stored dense (None when sparse-encoded).
  values: Optional[np.ndarray] = dataclasses.field(default=None, repr=False, compare=False)
  strides: tuple = ()  # (height, width), convolutions only.
  padding: str = ""  # SAME or VALID, convolutions only.

  @property
  def sparsity(self) -> float:
    return self.zeros / self.weights if self.weights else 0.0

  @property
  def effective_macs(self) -> float:
    """MACs left if every zero weight were skipped."""
    return self.macs * (1.0 - self.sparsity)


@dataclasses.dataclass(frozen=True)
class Graph:
  layers: List[Layer]
  ops: List[str]

  @property
  def macs(self) -> int:
    return sum(l.macs for l in self.layers)

  @property
  def effective_macs(self) -> float:
    return sum(l.effective_macs for l in self.layers)

  def layer_sparsity(self) -> dict:
    return {l.name: l.sparsity for l in self.layers}


def _layer_name(tensor_names: Sequence[str], known: Optional[set]) -> str:
  """'small_cnn/conv2/Relu;small_cnn/conv2/BiasAdd' -> 'conv2' (the model's own layer name),
  from the first of `tensor_names` (the weights', then the bias', then the output's) that
  carries a known one: a sparse-encoded last layer's weights are named after the model's
  output ('StatefulPartitionedCall:01'), its bias still after the layer."""
  if known:
    for name in tensor_names:
      for p in (p for chunk in name.split(";") for p in chunk.split("/")):
        if p in known:
          return p
  first = tensor_names[0].split(";")[0].split("/")
  return first[1] if len(first) > 2 else tensor_names[0]


def read(path_or_bytes, layer_names=None) -> Graph:
  """Parses a .tflite file (path or bytes) into its weighted layers.

  Args:
    path_or_bytes: the file.
    layer_names: Keras layer names to look for in tensor names (optional).

  Returns:
    A Graph with one Layer per CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED op.
  """
  if isinstance(path_or_bytes, (bytes, bytearray)):
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(path_or_bytes))
  else:
    model = flatbuffer_utils.read_model(str(path_or_bytes))
  known = set(layer_names) if layer_names else None
  graph = model.subgraphs[0]
  op_names = []
  producer = {}
  for op in graph.operators:
    code = model.operatorCodes[op.opcodeIndex]
    name = _OP_NAMES.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
    op_names.append(name)
    for t in op.outputs:
      producer[int(t)] = (name, op)

  layers = []
  for name, op in zip(op_names, graph.operators):
    if name not in _WEIGHTED:
      continue
    idx = int(op.inputs[1])
    sparse = False
    while idx in producer and producer[idx][0] in _DECODERS:  # Back to the stored constant.
      sparse |= producer[idx][0] == "DENSIFY"
      idx = int(producer[idx][1].inputs[0])
    tensor = graph.tensors[idx]
    dense_size = int(np.prod(tensor.shape))
    raw = model.buffers[tensor.buffer].data
    dtype = _DTYPES.get(tensor.type, np.uint8)
    values = np.frombuffer(bytes(raw), dtype=dtype) if raw is not None else np.zeros(0, dtype)
    sparse |= tensor.sparsity is not None
    zeros = dense_size - int(np.count_nonzero(values))
    q = tensor.quantization
    scales = tuple(float(x) for x in q.scale) if q is not None and q.scale is not None else None
    out_shape = [int(d) for d in graph.tensors[int(op.outputs[0])].shape]
    w_shape = [int(d) for d in tensor.shape]
    if name == "CONV_2D":  # weights [out, kh, kw, in]
      macs = int(np.prod(out_shape)) * int(np.prod(w_shape[1:]))
    elif name == "DEPTHWISE_CONV_2D":  # weights [1, kh, kw, channels]
      macs = int(np.prod(out_shape)) * w_shape[1] * w_shape[2]
    else:  # FULLY_CONNECTED, weights [out, in]
      macs = int(np.prod(out_shape)) * w_shape[-1]
    opts = op.builtinOptions
    names = [tensor.name.decode()] + [graph.tensors[int(i)].name.decode() for i in
                                      (list(op.inputs[2:]) + list(op.outputs)) if int(i) >= 0]
    layers.append(Layer(name, _layer_name(names, known), dense_size, zeros, sparse,
                        np.dtype(dtype).name, macs, tuple(w_shape), scales or None,
                        None if sparse or values.size != dense_size else values,
                        (int(opts.strideH), int(opts.strideW)) if hasattr(opts, "strideH") else (),
                        {0: "SAME", 1: "VALID"}.get(getattr(opts, "padding", None), "")))
  return Graph(_named_by_position(layers, list(layer_names or [])), op_names)


def _named_by_position(layers: List[Layer], names: List[str]) -> List[Layer]:
  """Layers whose tensors carry no Keras name (a sparse last layer without bias keeps none)
  get the name at their position, where the file has one weighted op per Keras layer, in
  order, and every named one sits at its own name's position."""
  if len(layers) != len(names) or all(l.name in names for l in layers):
    return layers
  if any(l.name in names and l.name != n for l, n in zip(layers, names)):
    return layers
  return [l if l.name in names else dataclasses.replace(l, name=n)
          for l, n in zip(layers, names)]


def sparse_inference_blockers(g: Graph, has_avx: bool) -> List[str]:
  """Why XNNPACK's sparse kernels cannot skip this file's zero weights here ([] = they can).

  XNNPACK runs sparse inference only on CPUs without AVX, for float32/float16 weights, when at
  least 2/3 of the 1x1-conv weights are zero, in a graph that starts with a 3x3 stride-2 conv
  on 3 channels padded by 1 (a PAD op, then VALID) and ends in a spatial mean. Everywhere
  else zeros are multiplied like any weight, and sparse-encoded tensors are densified when the
  model loads.
  """
  reasons = []
  if has_avx:
    reasons.append("this CPU has AVX")
  if any(l.dtype not in ("float32", "float16") for l in g.layers):
    reasons.append("weights are not float32/float16")
  pointwise = [l for l in g.layers if l.op == "CONV_2D" and l.shape[1:3] == (1, 1)]
  if not pointwise:
    reasons.append("no 1x1 convolutions")
  elif sum(l.zeros for l in pointwise) < 2 / 3 * sum(l.weights for l in pointwise):
    reasons.append("under 2/3 of the 1x1-conv weights are zero")
  first = g.layers[0] if g.layers else None
  if not (first and first.op == "CONV_2D" and first.shape[1:] == (3, 3, 3) and "MEAN" in g.ops):
    reasons.append("graph does not start with a 3x3 conv on 3 channels and end in a mean")
  elif first.strides != (2, 2) or first.padding != "VALID" or "PAD" not in g.ops:
    # XNNPACK wants 3x3, stride 2, padding 1 on every side; SAME pads an even input (0, 1).
    reasons.append("the first 3x3 conv is not stride 2 with explicit padding (ZeroPadding2D(1) "
                   "then padding='valid')")
  return reasons
