"""Benchmarks: one command each, results with machine and date in ``benchmarks/results/``."""
