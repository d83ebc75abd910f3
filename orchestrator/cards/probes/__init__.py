"""Aptitude tests: the probes of each task type and how their answers are scored."""
