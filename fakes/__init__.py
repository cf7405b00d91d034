"""Loopback peers that speak each external protocol faithfully, errors and rate limits included."""
