"""Local OpenAI-compatible and Anthropic-compatible servers on 127.0.0.1 (real HTTP, threaded http.server).

Each test scripts the answers: `server.push(status=..., body=..., headers=..., delay=...)`; with nothing
scripted the server answers a normal completion. Every request is recorded (path, headers, JSON body, the
monotonic time it arrived)."""

import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"


def openai_reply(content, *, prompt_tokens=10, completion_tokens=5, model="fake-gpt"):
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def anthropic_reply(content, *, prompt_tokens=10, completion_tokens=5, model="fake-claude"):
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": content}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": prompt_tokens, "output_tokens": completion_tokens},
    }


# The provider API key the `provider` fixture (tests/runs/conftest.py) stores; a test checks it is sent.
API_KEY = "sk-test-0123456789abcdef0123456789abcdef"


class FakeLlm:
    def __init__(self, kind: str):
        self.kind = kind
        self.requests: list[dict] = []
        self.script: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):
                pass

            def do_POST(self):
                arrived = time.monotonic()
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                with server.lock:
                    server.requests.append(
                        {
                            "path": self.path,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": body,
                            "raw": raw,
                            "at": arrived,
                            "wall": time.time(),
                        }
                    )
                    step = server.script.pop(0) if server.script else {}
                expected = OPENAI_PATH if server.kind == "openai" else ANTHROPIC_PATH
                if self.path != expected:
                    return self._send(404, {"error": {"message": f"no route {self.path}"}}, {})
                if step.get("delay"):
                    time.sleep(step["delay"])
                if "status" in step and step["status"] >= 400:
                    return self._send(step["status"], step.get("body", {"error": {"message": "err"}}),
                                      step.get("headers", {}))  # fmt: skip
                body = step.get("body")
                if body is None:
                    content = step.get("content", "Hello from the fake model.")
                    usage = {k: step[k] for k in ("prompt_tokens", "completion_tokens") if k in step}
                    reply = openai_reply if server.kind == "openai" else anthropic_reply
                    body = reply(content, **usage, **({"model": step["model"]} if "model" in step else {}))
                self._send(step.get("status", 200), body, step.get("headers", {}))

            def _send(self, status, body, headers):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        root = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        # What an admin would enter as base_url: OpenAI's includes /v1, Anthropic's does not.
        self.base_url = f"{root}/v1" if kind == "openai" else root
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def push(self, **step) -> None:
        self.script.append(step)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def messages(self, index: int = -1) -> list[dict]:
        return self.requests[index]["body"]["messages"]

    def system(self, index: int = -1) -> str:
        body = self.requests[index]["body"]
        if self.kind == "anthropic":
            return body.get("system", "")
        first = body["messages"][0]
        return first["content"] if first["role"] == "system" else ""

    def user_messages(self, index: int = -1) -> list[dict]:
        return [m for m in self.messages(index) if m["role"] != "system"]
