"""Errors a user can cause. Each message says what went wrong and what to do about it.

The CLI turns any `LLMKitError` into one red line and exit code 2; the server (a later layer) turns
it into OpenAI's error body with the `status_code` below.
"""


class LLMKitError(Exception):
    """Base class for every error a user can fix by changing their input or set-up.

    `param` names the request field at fault where there is one (OpenAI's error body carries it).
    """

    status_code = 400
    param: str | None = None

    def __init__(self, message: str = "", *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class ModelNotFoundError(LLMKitError):
    """A model name, path or hub id that resolves to nothing."""

    status_code = 404


class OfflineError(LLMKitError):
    """A download was needed but the hub (or its mirror) cannot be reached."""

    status_code = 503


class ConversionError(LLMKitError):
    """A GGUF file (or another source) could not be turned into a loadable model directory."""


class ChatTemplateError(LLMKitError):
    """A chat request to a model whose tokenizer has no chat template."""


class InvalidRequestError(LLMKitError):
    """A generation request that cannot run: bad parameters, empty or over-long prompt."""


class NotAFileError(LLMKitError):
    """A path meant for a file (an `--output`, a spec's output) that names a directory."""
