"""The first call to an OpenAI-compatible endpoint before a long job (data generation, pipeline runs): one clear
error for an unreachable server, a refused key or a wrong URL, instead of the same failure once per record."""

from __future__ import annotations

import openai

from llmkit.errors import LLMKitError

PREFLIGHT_TIMEOUT_S = 30.0


class EndpointError(LLMKitError):
    """The endpoint cannot serve the run at all: unreachable, refuses the key, or lacks the model."""

    status_code = 503


async def check_endpoint(client: openai.AsyncOpenAI, model: str | None, section: str, file: str) -> str:
    """List the endpoint's models once and return the model to ask: `model`, or the first listed.

    `section` and `file` name where the user fixes things (e.g. "endpoint" in "the spec").
    """
    url = str(client.base_url).rstrip("/")
    try:
        models = await client.with_options(timeout=PREFLIGHT_TIMEOUT_S, max_retries=0).models.list()
    except openai.APIConnectionError as error:
        raise EndpointError(
            f"cannot reach {url}/ ({error.__cause__ or error}); start the server or fix {section}.base_url in {file}"
        ) from None
    except openai.AuthenticationError:
        raise EndpointError(
            f"{url} refused the API key; put it in the environment variable that {section}.api_key_env names"
        ) from None
    except openai.APIStatusError as error:
        raise EndpointError(
            f"{url}/models answered HTTP {error.status_code}; {section}.base_url should be the API root "
            "(usually ending in /v1)"
        ) from None
    if model is not None:
        return model
    if not models.data:
        raise EndpointError(f"{url} lists no models; set {section}.model in {file}")
    return models.data[0].id
