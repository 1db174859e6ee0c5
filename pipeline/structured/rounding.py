"""Kept channel counts rounded to what the CPU's kernels compute anyway.

XNNPACK's float kernels work on channels in SIMD tiles (8 floats on AVX2, 16 on AVX-512, 4 or 8
on ARM64 NEON), and a partial tile costs about a full one. Measured
on a trained MobileNetV2 (alpha 0.35, 96x96, AMD EPYC AVX2; BUILD.md, camera recipe): 40% of
every group removed gave 1.40x lower float32 latency (MACs 0.43x); with kept counts rounded
to multiples of 8 and the 8-channel groups left whole, 2.21x (MACs 0.48x).
"""

from typing import Dict, Tuple

import numpy as np


def round_kept(keep: Dict[int, np.ndarray], scores: Dict[int, np.ndarray], sizes: Dict[int, int],
               multiple: int, min_channels: int = 1
               ) -> Tuple[Dict[int, np.ndarray], Dict[int, str]]:
  """Each pruned group keeps the nearest multiple of `multiple` of its best-scored channels
  (at least the smallest multiple that is >= `min_channels`).

  Args:
    keep: {group id: sorted kept channel indices} from `structured.select`.
    scores: {group id: per-channel score}, higher = keep.
    sizes: {group id: channels before pruning}.
    multiple: the tile; 1 leaves `keep` as it is.
    min_channels: no group keeps fewer (--min_channels).

  Returns:
    (keep, whole): the rounded selection, and {group id: why it was left whole} for pruned
    groups that rounding kept whole.
  """
  if multiple <= 1:
    return keep, {}
  out, whole = {}, {}
  for gid, kept in keep.items():
    size = sizes[gid]
    if len(kept) == size:
      out[gid] = kept
    elif size <= multiple:
      out[gid] = np.arange(size)
      whole[gid] = (f"{size} channels, no more than --channel_multiple={multiple}: removing "
                    "some would save no time")
    else:
      floor = -(-max(1, min_channels) // multiple) * multiple
      n = min(size, max(floor, int(np.floor(len(kept) / multiple + 0.5)) * multiple))
      out[gid] = np.sort(np.argsort(-scores[gid], kind="stable")[:n])
      if n == size:
        whole[gid] = (f"{len(kept)} of {size} channels kept, rounded to a multiple of "
                      f"--channel_multiple={multiple}, is all of them")
  return out, whole
