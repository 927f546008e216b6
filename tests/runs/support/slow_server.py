"""A threaded HTTP server on 127.0.0.1 that answers `/sleep?s=SECONDS` after that long, counting the
requests it holds at once (`peak`: how many steps overlapped) and the clients that hung up while it
waited (`abandoned`). `/flaky?fail=N` answers 503 to its first N requests, then 200. Used by the I/O
slots tests and bench/io_bench.py."""

from __future__ import annotations

import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class SlowServer:
    def __init__(self):
        self.lock = threading.Lock()
        self.current = 0
        self.peak = 0
        self.served = 0
        self.abandoned = 0
        self.flaky = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):
                pass

            def _reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _client_left(self) -> bool:
                ready, _, _ = select.select([self.connection], [], [], 0)
                return bool(ready) and self.connection.recv(1, socket.MSG_PEEK) == b""

            def do_GET(self):
                url = urlsplit(self.path)
                query = {key: values[0] for key, values in parse_qs(url.query).items()}
                if url.path == "/flaky":
                    with server.lock:
                        server.flaky += 1
                        count = server.flaky
                    self._reply(503 if count <= int(query.get("fail", 1)) else 200, b'{"ok": true}')
                    return
                with server.lock:
                    server.current += 1
                    server.peak = max(server.peak, server.current)
                try:
                    until = time.monotonic() + float(query.get("s", 1))
                    while (left := until - time.monotonic()) > 0:
                        time.sleep(min(left, 0.05))
                        if self._client_left():
                            with server.lock:
                                server.abandoned += 1
                            return
                    self._reply(200, b'{"ok": true}')
                    with server.lock:
                        server.served += 1
                finally:
                    with server.lock:
                        server.current -= 1

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 2048

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> SlowServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def reset(self) -> None:
        with self.lock:
            self.peak = self.current
            self.served = 0
            self.abandoned = 0
