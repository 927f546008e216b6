"""Exit 0 when both the PostgreSQL and Redis URLs given accept connections, else 1 (used by make test)."""

import socket
import sys
from urllib.parse import urlparse


def reachable(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port), timeout=1):
            return True
    except OSError:
        return False


sys.exit(0 if all(reachable(url) for url in sys.argv[1:]) else 1)
