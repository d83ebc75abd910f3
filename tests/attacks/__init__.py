"""Attack programs run through the sandbox by tests/execution/sandbox/test_sandbox_attacks.py.

Each prints ``ESCAPED: ...`` if the attack worked and ``BLOCKED: ...`` when it was stopped.
Placeholders ``@NAME@`` are filled in by the test (ports, paths, pids made at test time).
"""
