"""Benchmark, training and labelling scripts built on the library."""
