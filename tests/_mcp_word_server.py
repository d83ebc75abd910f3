"""A small real MCP server for the tests of the ``mcp`` backend (run as a script, never imported).

``python _mcp_word_server.py stdio`` serves over standard input and output;
``python _mcp_word_server.py http PORT`` serves streamable HTTP at http://127.0.0.1:PORT/mcp.
Its tools: ``word_count`` and ``red_square`` (real work), ``write_file`` and ``connect`` (what a
sandboxed server must be refused), ``fail`` (a tool error) and ``hang`` (never answers).
"""

import io
import socket
import sys
import time

from mcp.server.mcpserver import Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from PIL import Image as PILImage

server = MCPServer("word-server")


@server.tool()
def word_count(text: str) -> str:
    """Count the words in a text: how many words the text has."""
    return str(len(text.split()))


@server.tool()
def red_square(size: int = 8) -> Image:
    """Draw a red square picture of the given size in pixels."""
    buffer = io.BytesIO()
    PILImage.new("RGB", (size, size), (255, 0, 0)).save(buffer, format="PNG")
    return Image(data=buffer.getvalue(), format="png")


@server.tool()
def write_file(path: str, text: str) -> str:
    """Write a text into a file at the given path on the server's machine."""
    try:
        with open(path, "w") as file:
            file.write(text)
    except OSError as exc:  # the server's own report of why (the SDK hides a bare exception)
        raise ToolError(f"cannot write {path}: {exc.strerror}") from exc
    return f"wrote {path}"


@server.tool()
def connect(port: int) -> str:
    """Open a TCP connection to a port of 127.0.0.1 and say hello."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as conn:
            conn.sendall(b"hello from the mcp server")
    except OSError as exc:
        raise ToolError(f"cannot connect to 127.0.0.1:{port}: {exc}") from exc
    return "connected"


@server.tool()
def fail(text: str) -> str:
    """A tool that always fails, saying why."""
    raise ToolError(f"the dictionary is closed today ({text})")


@server.tool()
def hang(text: str) -> str:
    """A tool that never answers."""
    time.sleep(3600)
    return text


@server.tool()
def settings(options: dict, text: str = "") -> str:
    """A tool whose required argument is an object, which no card input carries."""
    return str(options)


if __name__ == "__main__":
    if sys.argv[1] == "http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
