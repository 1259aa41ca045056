"""A real server on a free loopback port, in a background thread, serving the embedded model."""

from __future__ import annotations

import socket
import threading
import time

import pytest

API_KEY = "test-key"
MODEL_ID = "smollm2-135m"


class LiveServer:
    """uvicorn running `app` on 127.0.0.1 in a daemon thread; `stop()` shuts it (and its engine) down."""

    def __init__(self, app) -> None:
        import uvicorn

        self.app = app
        self.model_id = MODEL_ID
        self.api_key = API_KEY
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)

    @property
    def engine(self):
        """The app's `AsyncEngine`."""
        return self.app.state.serving.engine

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def start_server(smollm):
    """A function that serves an `LLM` (default: the session's SmolLM2 with a fresh engine) with `create_app`
    options; every server it started stops with the module. Small batch and context keep the tests quick."""
    from llmkit.api import LLM
    from llmkit.engine.engine import Engine
    from llmkit.serve import create_app

    started = []

    def start(llm: LLM | None = None, **options) -> LiveServer:
        llm = llm or LLM(Engine(smollm.model, smollm.tokenizer, max_batch_size=4, max_seq_len=512))
        options.setdefault("api_key", API_KEY)
        started.append(LiveServer(create_app(llm, model_id=MODEL_ID, **options)))
        return started[-1]

    yield start
    for live in started:
        live.stop()


@pytest.fixture(scope="module")
def server(start_server):
    return start_server()


@pytest.fixture(scope="module")
def client(server):
    """The official OpenAI client pointed at the live server."""
    openai = pytest.importorskip("openai")
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0, timeout=60) as client:
        yield client
