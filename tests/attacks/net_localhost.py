"""Connect to a server the test runs on the host's 127.0.0.1."""

import socket

try:
    socket.create_connection(("127.0.0.1", int("@PORT@")), timeout=3).sendall(b"stolen")
    print("ESCAPED: connected to the host's server")
except OSError as exc:
    print(f"BLOCKED: {exc}")
