"""Evaluation (Sec. 4, App. A.3, App. J): the held-out animation, benchmarks, metrics, the benchmark protocol and
report, ablations, the CFG sweep, and the summary of a data root."""
