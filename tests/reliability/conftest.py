"""Fixtures shared by the reliability tests (each module keeps its own specific ones)."""
