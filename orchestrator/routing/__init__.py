"""Routing: after each round, decide per subtask what happens next."""
