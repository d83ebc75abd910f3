"""Execution: run a card's model on its inputs, in warm sandboxed workers."""
