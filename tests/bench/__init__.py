"""Benchmarks (not tests: pytest collects nothing here); see docs/benchmarks.md."""
