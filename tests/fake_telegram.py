"""A stand-in for Telegram's Bot API (https://core.telegram.org/bots/api), which cannot be
reached from the test machine: a local HTTP server that answers `sendMessage` the way
Telegram does, records what it was sent, and can be told to answer the next requests
with flood control (429 and `retry_after`), an outage (502) or a refusal (400)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "123456:test-token-abcdefghijklmnopqrstuvwxyz"
CHAT_ID = "-1001234567890"


class FakeTelegram:
    def __init__(self):
        self.requests: list[tuple[float, int, dict]] = []  # (time, status, body)
        self.messages: list[dict] = []  # accepted sendMessage bodies
        self.script: list[tuple[int, dict]] = []  # next answers, in order
        self.chats = {CHAT_ID}  # the chats the bot may write to
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, answer = fake.answer(self.path, body)
                fake.requests.append((time.monotonic(), status, body))
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def settings(self) -> dict[str, str]:
        """The notifier's settings that point it at this bot and its chat."""
        return {
            "telegram_bot_token": TOKEN,
            "telegram_chat_id": CHAT_ID,
            "telegram_api_url": self.url,
        }

    def answer(self, path: str, body: dict) -> tuple[int, dict]:
        if path != f"/bot{TOKEN}/sendMessage":
            return 401 if "sendMessage" in path else 404, error(401, "Unauthorized")
        if self.script:
            return self.script.pop(0)
        if str(body.get("chat_id")) not in self.chats:
            return 400, error(400, "Bad Request: chat not found")
        if not body.get("text"):
            return 400, error(400, "Bad Request: message text is empty")
        self.messages.append(body)
        message = {
            "message_id": len(self.messages),
            "date": int(time.time()),
            "chat": {"id": int(body["chat_id"]), "type": "supergroup"},
            "text": body["text"],
        }
        return 200, {"ok": True, "result": message}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def error(code: int, description: str, **parameters) -> dict:
    answer = {"ok": False, "error_code": code, "description": description}
    if parameters:
        answer["parameters"] = parameters
    return answer


def flood_control(seconds: int) -> tuple[int, dict]:
    return 429, error(429, f"Too Many Requests: retry after {seconds}", retry_after=seconds)


def outage() -> tuple[int, dict]:
    return 502, error(502, "Bad Gateway")


def chat_not_found() -> tuple[int, dict]:
    return 400, error(400, "Bad Request: chat not found")
