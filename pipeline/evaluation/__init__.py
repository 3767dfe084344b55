"""Evaluation (Sec. 4, App. A.3): benchmarks, metrics, the benchmark protocol and report, ablations, the CFG sweep."""
