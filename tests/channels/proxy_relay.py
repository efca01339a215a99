"""A load balancer in one process, for tests: ``python proxy_relay.py HOST PORT CLIENT_IP``.

It connects to the gateway at HOST:PORT, sends a PROXY v2 header naming CLIENT_IP (port 40000)
as the client, then relays stdin to the gateway and the gateway to stdout: as OpenSSH's
``ProxyCommand``, or behind a listening socket (:func:`serve_relay` in the tests). CLIENT_IP
``local`` sends a LOCAL header, ``none`` no header at all.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.core.proxy import Endpoint, build_header


def header_for(client: str) -> bytes:
    """The header a balancer sends for ``client`` (``local``: LOCAL; ``none``: nothing)."""
    if client == "none":
        return b""
    if client == "local":
        return build_header(None)
    server = Endpoint("::1" if ":" in client else "127.0.0.1", 22)
    return build_header(Endpoint(client, 40000), server)


def main() -> None:
    """Relay stdin/stdout through a connection that starts with the header."""
    host, port, client = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    sock = socket.create_connection((host, port))
    sock.sendall(header_for(client))

    def upstream() -> None:
        while data := os.read(0, 65536):
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)

    threading.Thread(target=upstream, daemon=True).start()
    while data := sock.recv(65536):
        os.write(1, data)


if __name__ == "__main__":
    main()
