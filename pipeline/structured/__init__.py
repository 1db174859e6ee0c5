"""Structured pruning: filters, channels, units and whole blocks removed for real, leaving a
smaller dense model that is faster on every runtime.

surgery.py reads the graph (which channels move together) and rebuilds the model narrower;
prune.py scores channels (l1, l2, APoZ, mean activation, Taylor, BN gamma), chooses what goes
and fine-tunes; rounding.py keeps widths on hardware-friendly multiples; blocks.py removes
whole residual blocks. It never imports unstructured/ (the two are peers).
"""
