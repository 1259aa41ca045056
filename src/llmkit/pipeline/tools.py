"""Tools a task offers the model: Python functions (schema from their signature and docstring) or HTTP endpoints.

A call runs with the tool's timeout; whatever happens (bad arguments, an exception, a timeout, an HTTP
error) becomes the text fed back to the model as the `role: tool` message, and is kept in the trace.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from llmkit.pipeline.config import ToolConfig


@dataclass(frozen=True)
class ToolCall:
    """One call the model made and what came of it: the text fed back, or the error that text reports."""

    id: str
    name: str
    arguments: str
    result: str
    error: str | None
    seconds: float


class Toolset:
    """The tools of one task: their OpenAI `tools` entries, and calls by name (HTTP ones through `http`)."""

    def __init__(self, tools: Sequence[ToolConfig], http: httpx.AsyncClient) -> None:
        self.tools = {tool.name: tool for tool in tools}
        self.http = http

    @property
    def specs(self) -> list[dict[str, Any]]:
        """The `tools` request parameter."""
        return [
            {"type": "function",
             "function": {"name": tool.name, "description": tool.description or "", "parameters": tool.parameters}}
            for tool in self.tools.values()
        ]

    async def call(self, call_id: str, name: str, arguments: str) -> ToolCall:
        """Run one call; failures come back as an `error: …` result for the model to read, never as exceptions."""
        started = time.monotonic()
        try:
            result, error = _as_text(await self._run(name, arguments)), None
        except asyncio.TimeoutError:
            error = f"{name} did not answer within {self.tools[name].timeout:g} s"
        except Exception as failure:  # a tool may fail in any way; the model is told and the run goes on
            error = str(failure) if isinstance(failure, _CallError) else f"{type(failure).__name__}: {failure}"
        return ToolCall(call_id, name, arguments, result if error is None else f"error: {error}", error,
                        round(time.monotonic() - started, 3))

    async def _run(self, name: str, arguments: str) -> Any:
        tool = self.tools.get(name)
        if tool is None:
            raise _CallError(f"there is no tool {name!r}; the tools are {', '.join(self.tools) or 'none'}")
        try:
            values = json.loads(arguments or "{}")
        except json.JSONDecodeError as problem:
            raise _CallError(f"the arguments are not JSON ({problem.msg}): {arguments[:200]}") from None
        if not isinstance(values, dict):
            raise _CallError(f"the arguments must be a JSON object, not {type(values).__name__}")
        return await asyncio.wait_for(self._invoke(tool, values), tool.timeout)

    async def _invoke(self, tool: ToolConfig, values: dict[str, Any]) -> Any:
        if tool.url is not None:
            return await self._request(tool, values)
        if inspect.iscoroutinefunction(tool.function):
            return await tool.function(**values)
        return await asyncio.to_thread(tool.function, **values)  # a blocking tool must not stall other records

    async def _request(self, tool: ToolConfig, values: dict[str, Any]) -> str:
        """The endpoint's answer to the arguments (a JSON body for POST, query parameters for GET)."""
        body = {"json": values} if tool.method == "POST" else {"params": values}
        headers = {"Authorization": f"Bearer {os.environ[tool.api_key_env]}"} if tool.api_key_env else {}
        response = await self.http.request(tool.method, tool.url, headers=headers, **body)
        if response.is_error:
            raise _CallError(f"{tool.url} answered HTTP {response.status_code}: {response.text[:300]}")
        return response.text


class _CallError(Exception):
    """A call that cannot run, described for the model."""


def _as_text(result: Any) -> str:
    return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False, default=str)
