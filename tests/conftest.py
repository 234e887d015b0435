"""Shared fixtures. Helpers for waiting on conditions live in tests/waiting.py."""
