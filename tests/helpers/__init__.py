"""Shared test helpers (tiny networks built and saved by the tests themselves)."""
