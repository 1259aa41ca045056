"""Every failure leaves the server as OpenAI's error body with a 4xx status (5xx only for our own bugs).

User errors are `llmkit.errors.*` (each knows its status); FastAPI's validation errors, malformed
JSON and unknown routes are re-shaped here so clients never see a raw pydantic dump or a 422.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from llmkit.errors import InvalidRequestError, LLMKitError
from llmkit.serve.protocol import ErrorInfo, ErrorResponse
from llmkit.validation import problem

logger = logging.getLogger("llmkit.serve")

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
}


class AuthenticationError(LLMKitError):
    """A /v1 request without the server's API key."""

    status_code = 401


class PermissionDeniedError(LLMKitError):
    """A request this server is not configured to allow (e.g. loading adapters without an API key)."""

    status_code = 403


def invalid(message: str, param: str | None = None) -> InvalidRequestError:
    """An `InvalidRequestError` that also names the offending request field (OpenAI's `param`)."""
    return InvalidRequestError(message, param=param)


def error_response(
    status: int,
    message: str,
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """OpenAI's error body with `status` (and `headers`, such as a 405's `Allow`)."""
    body = ErrorResponse(
        error=ErrorInfo(message=message, type=ERROR_TYPES.get(status, "server_error"), param=param, code=code)
    )
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def error_chunk(error: Exception) -> str:
    """An error met after a stream started: the body of one SSE event (the status is already 200)."""
    status = getattr(error, "status_code", 500)
    message = str(error) if isinstance(error, LLMKitError) else "internal error while generating"
    info = ErrorInfo(message=message, type=ERROR_TYPES.get(status, "server_error"), param=getattr(error, "param", None))
    return ErrorResponse(error=info).model_dump_json()


def describe_request_errors(error: RequestValidationError) -> tuple[str, str | None]:
    """One readable line for FastAPI's validation errors, and the first offending field."""
    lines, params = [], []
    for err in error.errors():
        loc = [str(part) for part in err.get("loc", ()) if part != "body"]
        if err.get("type") == "json_invalid":
            return f"the request body is not valid JSON: {err.get('ctx', {}).get('error', err['msg'])}", None
        if err.get("type") == "missing" and not loc:
            return "the request needs a JSON body", None
        # Union types report one error per member (`prompt.str`, `prompt.list[int]`): keep the field name.
        field = ".".join(part for part in loc if not any(c in part for c in "[]") and part not in {"str", "int"})
        params.append(field or None)
        if err.get("type") == "extra_forbidden":
            lines.append(f"unrecognized request argument supplied: {field} (not supported here: leave it out)")
            continue
        lines.append(f"{field or 'body'}: {problem(err)}"[:300])
    unique = list(dict.fromkeys(lines))
    return "invalid request: " + "; ".join(unique[:5]), params[0] if params else None


def add_exception_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error OpenAI's body."""

    @app.exception_handler(LLMKitError)
    async def _user_error(request: Request, error: LLMKitError) -> JSONResponse:
        code = "invalid_api_key" if error.status_code == 401 else getattr(error, "code", None)
        retry_after = getattr(error, "retry_after", None)
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return error_response(error.status_code, str(error), error.param, code, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        message, param = describe_request_errors(error)
        return error_response(400, message, param)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
        return error_response(error.status_code, str(error.detail), headers=error.headers)

    @app.exception_handler(Exception)
    async def _bug(request: Request, error: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal server error (a bug in llmkit: please report it)")


def api_key_check(api_key: str | None):
    """A dependency that lets a request through only with `Authorization: Bearer <api_key>`."""

    async def check(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), api_key.encode()):
            raise AuthenticationError("missing or wrong API key: send the header 'Authorization: Bearer <key>'")

    return check
