"""Orchestration: each handler uses the domain rules and the adapters to do one use case."""
