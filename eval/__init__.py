"""Evaluation: benchmarks, metrics, reports."""
