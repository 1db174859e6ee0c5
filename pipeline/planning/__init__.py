"""Choosing how much to prune: measure before deciding.

sensitivity.py prunes each layer alone and records the accuracy curves; layer_rates.py turns
--layer_rates (or the curves, with `allocate`) into per-layer rates; budget.py raises the rate
while validation accuracy stays within --max_accuracy_drop; speed_target.py and
latency_table.py choose structured widths to reach --target_speedup; pareto.py finds the
frontier of a sweep. Decisions leave this package as data (rates as a dict, a Plan).
"""
