"""A TLS client that presents one certificate and signs with another key (tlslite-ng, pure
Python, which does not check that they match as OpenSSL's clients do).

Run as a script: ``python forged_client.py PORT CERT.pem KEY.pem``; prints ``HTTP <status>``
when the handshake succeeded and the gateway answered ``GET /v1/OUT/``, or ``TLS <error>``.
tlslite-ng imports the deprecated ``asyncore``, so it runs in its own process, outside the
test run's warnings-as-errors, and does not block the event loop the gateway serves on.
"""

from __future__ import annotations

import socket
import sys
import warnings


def main(port: int, cert_path: str, key_path: str) -> str:
    """One forged handshake and request; what happened, in one line."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from tlslite import (
            HandshakeSettings,
            TLSConnection,
            X509CertChain,
            parsePEMKey,
        )
    chain = X509CertChain()
    with open(cert_path) as cert_file:
        chain.parsePemList(cert_file.read())
    with open(key_path) as key_file:
        key = parsePEMKey(key_file.read(), private=True)
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    connection = TLSConnection(sock)
    try:
        settings = HandshakeSettings()
        settings.maxVersion = (3, 3)  # TLS 1.2: its TLS 1.3 client broke off (not studied)
        connection.handshakeClientCert(chain, key, settings=settings)
        connection.write(b"GET /v1/OUT/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while len(data) < 12:
            block = connection.read()
            if not block:
                break
            data += block
        return "HTTP " + data[9:12].decode(errors="replace")
    except Exception as exc:  # the outcome is printed, whatever it is
        return f"TLS {type(exc).__name__}: {exc}"[:300]
    finally:
        sock.close()


if __name__ == "__main__":
    print(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
