"""Selection: rank the tool cards that fit a subtask."""
