"""The stages of a run, each a function that takes what the one before left and shows one
console line: baseline.py, pruning.py (blocks, structured, prune, budget), measure.py (export,
verify and gate, benchmark), arm.py (--arm_check), keras3.py (the Keras 3 file back).
pipeline/job.py chains them.
"""
