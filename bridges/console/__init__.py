"""The console: the whole flow in a terminal, with no platform credentials (the fallback platform)."""
