"""With network permission: reach the host's localhost server, directly and through the proxy."""

import socket

found = []
try:
    socket.create_connection(("127.0.0.1", int("@PORT@")), timeout=3).sendall(b"direct")
    found.append("connected directly")
except OSError as exc:
    print(f"direct: {exc}")
for target in ("127.0.0.1:@PORT@", "localhost:@PORT@", "[::1]:@PORT@"):
    try:
        proxy = socket.create_connection(("127.0.0.1", 3128), timeout=3)
        proxy.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        reply = proxy.recv(100)
        if b" 200 " in reply:
            proxy.sendall(b"proxied")
            found.append(f"proxy to {target}")
    except OSError as exc:
        print(f"proxy {target}: {exc}")
print(f"ESCAPED: {found}" if found else "BLOCKED: the host's localhost is out of reach")
