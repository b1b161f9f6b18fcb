"""Benchmarks: they print figures (JSON as the last line) and never fail on a timing."""
