"""Embedded local stack: moto plus the kit's handlers, run in-process (development tooling only)."""
