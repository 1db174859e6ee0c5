"""Unstructured pruning: zeros in the weights, the masks TF-MOT keeps.

prune.py wraps a model with `prune_low_magnitude` under a PolynomialDecay or ConstantSparsity
schedule, fine-tunes and strips it; schedules.py runs the one-shot and iterative schedules for
the criteria of criteria.py (magnitude, global magnitude, gradient, OBD, OBS in obs.py,
random); patterns.py holds TF-MOT's M:N, block and XNNPACK-policy patterns; sparsity.py
counts zeros. It never imports structured/ (the two are peers).
"""
