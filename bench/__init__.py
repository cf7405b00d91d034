"""The load benchmark: `python -m bench.run` (see `bench.run` for what it measures and how)."""
