"""Baton's ASGI application under uvicorn, in a thread of the test process, on the test database.

pytest-django's `live_server` is a WSGI server, where Django buffers an asynchronous response (the run's
event stream) until it ends; production serves ASGI (`manage.py serve`, uvicorn), where every event goes
out as it happens. The live-run browser test uses this server to see exactly that."""

import socket
import threading
import time
from contextlib import contextmanager

import uvicorn
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def asgi_server():
    """Yield the base URL of a running server; stop it (and its open streams) on exit."""
    port = _free_port()
    config = uvicorn.Config(
        ASGIStaticFilesHandler(get_asgi_application()),
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_level="warning",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
