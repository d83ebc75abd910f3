"""Resolve a name and reach a public address."""

import socket

try:
    socket.create_connection(("1.1.1.1", 53), timeout=3)
    print("ESCAPED: reached 1.1.1.1")
except OSError as exc:
    print(f"BLOCKED: {exc}")
