"""Benchmarks of the operator on a real control plane (`make bench`); also used by the integration tests."""
