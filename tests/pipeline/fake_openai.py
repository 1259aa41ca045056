"""A scripted OpenAI-compatible model (a FastAPI app), and a loopback uvicorn server for code that opens connections."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

Answer = Callable[[dict[str, Any]], Any]


class ScriptedModel:
    """Answers each chat request with `answer(body)`: text, a message dict (e.g. with tool_calls) or an HTTP status.

    It keeps every request body and the largest number of requests it held at once.
    """

    def __init__(self, answer: Answer, delay_s: float = 0.0) -> None:
        self.answer, self.delay_s = answer, delay_s
        self.requests: list[dict[str, Any]] = []
        self.in_flight = self.most_in_flight = 0

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/v1/models")
        async def models():
            return {"object": "list", "data": [{"id": "scripted", "object": "model", "created": 0, "owned_by": "t"}]}

        @app.post("/v1/chat/completions")
        async def chat(request: Request):
            body = await request.json()
            self.requests.append(body)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            try:
                await asyncio.sleep(self.delay_s)
                reply = self.answer(body)
            finally:
                self.in_flight -= 1
            if isinstance(reply, int):
                return JSONResponse({"error": {"message": f"scripted {reply}", "type": "scripted"}}, status_code=reply)
            message = {"role": "assistant", "content": reply} if isinstance(reply, str) else reply
            return {
                "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "message": message,
                             "finish_reason": "tool_calls" if message.get("tool_calls") else "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
            }

        return app


def last_user_text(body: dict[str, Any]) -> str:
    """The content of the last user message of a chat request."""
    return next(message["content"] for message in reversed(body["messages"]) if message["role"] == "user")


def tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    """An assistant message asking for one tool call."""
    return {"role": "assistant", "content": None,
            "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]}


class LoopbackServer:
    """uvicorn serving `app` on a free 127.0.0.1 port in a daemon thread, for code that opens its own connections."""

    def __init__(self, app: FastAPI) -> None:
        import uvicorn

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the loopback server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
