"""Every request and response body of the server, as pydantic models (OpenAI's shapes, vLLM's extensions).

A request field we know is honoured, and range-checked here so a bad value is a 400 naming it, never a
failure deeper down; a field we do not know is a 400 naming it too ("unrecognized request argument", as
OpenAI answers), never silently dropped. OpenAI fields that cannot change the output (`user`, `metadata`,
`store`, …) are accepted and written to the request log. docs/serving.md lists every field and its bounds.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import jsonschema
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from llmkit.engine.params import (
    GREEDY_BELOW,
    MAX_LOGIT_BIAS,
    ResponseFormat,
    SamplingParams,
)
from llmkit.engine.sampling_defaults import resolve_sampling
from llmkit.errors import InvalidRequestError

FinishReason = Literal["stop", "length", "abort", "tool_calls", "content_filter"]
INT64 = 2**63
MAX_STOP = 4  # OpenAI's documented limit on stop sequences
TokenId = Annotated[int, Field(ge=0, lt=INT64)]


def _unicode(text: str) -> str:
    """Refuse lone UTF-16 surrogates (JSON's `"\\ud800"`): no tokenizer can encode them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains a lone surrogate escape (like \\ud800), which is not Unicode text") from None
    return text


Text = Annotated[str, AfterValidator(_unicode)]


class OpenAIModel(BaseModel):
    """A response body (or a part of one)."""

    model_config = ConfigDict(extra="ignore")


class RequestModel(BaseModel):
    """A request body (or a part of one): a field it does not declare is refused by name."""

    model_config = ConfigDict(extra="forbid")


def _unread(value: Any) -> Any:
    """Accept a field that clients echo back from responses only when it is empty: we would not read it."""
    if value not in (None, [], {}, ""):
        raise ValueError("is not read by llmkit: send null or leave it out")
    return value


Unread = Annotated[Any, AfterValidator(_unread)]


# ---- errors -------------------------------------------------------------------------------------


class ErrorInfo(OpenAIModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(OpenAIModel):
    """OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`."""

    error: ErrorInfo


# ---- models -------------------------------------------------------------------------------------


class ModelCard(OpenAIModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "llmkit"
    max_model_len: int | None = None
    root: str | None = Field(None, description="An adapter's own id (its directory stays private to the server).")
    parent: str | None = Field(None, description="The base model an adapter runs on.")
    backend: str | None = Field(None, description="What runs the chat model (e.g. 'torch, llmkit forward').")


class ModelList(OpenAIModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class LoadAdapterRequest(RequestModel):
    """Serve a LoRA adapter directory (PEFT format) as a new model id (vLLM's field names)."""

    lora_name: str = Field(min_length=1, max_length=200, description="A model id such as my-lora or org/name.")
    lora_path: str = Field(min_length=1, max_length=4096)


class UnloadAdapterRequest(RequestModel):
    lora_name: str = Field(min_length=1, max_length=200)


class ModelDeleted(OpenAIModel):
    id: str
    object: Literal["model"] = "model"
    deleted: bool = True


# ---- shared request parts -----------------------------------------------------------------------


class StreamOptions(RequestModel):
    include_usage: bool = False


class SamplingRequest(RequestModel):
    """Fields chat and completion requests share: OpenAI's sampling parameters plus vLLM's extensions."""

    model: str | None = Field(None, description="Model id; the server's model when left out.")
    max_tokens: int | None = Field(None, ge=1, description="Most tokens to generate; default: fill the context.")
    temperature: float | None = Field(
        None, ge=0.0, le=2.0, description="0 (or under 1e-5) means greedy decoding; default: the model's."
    )
    top_p: float | None = Field(None, gt=0.0, le=1.0, description="Default: the model's.")
    n: int = Field(1, ge=1, le=128, description="Completions per prompt.")
    stop: Text | Annotated[list[Text], Field(max_length=MAX_STOP)] | None = Field(
        None, description=f"Up to {MAX_STOP} stop strings, not returned."
    )
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = Field(None, ge=-INT64, lt=INT64)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    logit_bias: dict[TokenId, Annotated[float, Field(ge=-MAX_LOGIT_BIAS, le=MAX_LOGIT_BIAS)]] | None = Field(
        None, description="Token id (as a string key) -> bias in [-100, 100] added to its logit before sampling."
    )
    response_format: ResponseFormat | None = None
    # OpenAI fields that do not change the output: accepted and written to the request log.
    user: str | None = Field(None, max_length=256, description="Your end user's id; logged.")
    safety_identifier: str | None = Field(None, max_length=256, description="OpenAI's newer name for user; logged.")
    metadata: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]] | None = Field(
        None, max_length=16, description="Up to 16 key-value pairs; logged."
    )
    store: bool | None = Field(None, description="Accepted; llmkit keeps no completions. Logged.")
    service_tier: Literal["auto", "default", "flex", "scale", "priority"] | None = Field(
        None, description="Accepted; there is one tier. Logged."
    )
    prompt_cache_key: str | None = Field(None, max_length=256, description="A caching hint; logged.")
    # vLLM extensions
    top_k: int | None = Field(
        None, ge=-1, description="Keep the k most likely tokens (at most the vocabulary); 0 or -1: off; default: the model's."
    )
    min_p: float | None = Field(None, ge=0.0, le=1.0, description="Default: the model's.")
    repetition_penalty: float | None = Field(None, ge=0.01, le=100.0, description="Default: the model's.")
    min_tokens: int = Field(0, ge=0, description="EOS and stop_token_ids are held back until this many; <= max_tokens.")
    ignore_eos: bool = False
    use_beam_search: bool = False
    num_beams: int | None = Field(None, ge=1, le=64)
    length_penalty: float = Field(1.0, ge=-10.0, le=10.0)
    stop_token_ids: list[TokenId] | None = Field(None, description="Token ids (in the vocabulary) that end generation.")
    include_stop_str_in_output: bool = Field(False, description="Return the stop string that ended the text.")
    skip_special_tokens: bool = Field(True, description="Drop special tokens from the returned text.")

    @field_validator("temperature")
    @classmethod
    def _tiny_temperature_is_greedy(cls, value: float | None) -> float | None:
        """A temperature too small to divide logits by decodes greedily, as 0 does."""
        return 0.0 if value is not None and value < GREEDY_BELOW else value

    def to_sampling_params(
        self, max_tokens: int, logprobs: int | None, defaults: Mapping[str, float]
    ) -> SamplingParams:
        """This request's engine parameters (vLLM's `to_sampling_params`): sampling values it leaves out take the
        model's `defaults`, temperature 0 decodes greedily, beam search ignores the temperature, and a greedy
        request for `n` > 1 decodes once (the server copies the answer)."""
        beams = self.num_beams or (self.n if self.use_beam_search else 1)
        if beams > 1 and self.n > beams:
            raise InvalidRequestError(f"n ({self.n}) must be <= num_beams ({beams})", param="n")
        given = dict(
            temperature=self.temperature if beams == 1 else None,
            top_p=self.top_p,
            top_k=max(self.top_k, 0) if self.top_k is not None else None,
            min_p=self.min_p,
            repetition_penalty=self.repetition_penalty,
            num_beams=beams,
        )
        kwargs = resolve_sampling(given, defaults)
        greedy = beams == 1 and not kwargs.get("do_sample", False)
        return SamplingParams.create(
            **kwargs,
            max_new_tokens=max_tokens,
            min_new_tokens=self.min_tokens,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            length_penalty=self.length_penalty,
            num_return_sequences=1 if greedy else self.n,
            stop=self.stop,
            include_stop_str_in_output=self.include_stop_str_in_output,
            stop_token_ids=self.stop_token_ids or [],
            logit_bias=self.logit_bias or {},
            ignore_eos=self.ignore_eos,
            seed=self.seed,
            logprobs=logprobs,
            skip_special_tokens=self.skip_special_tokens,
            response_format=self.response_format,
        )

    def logged_fields(self) -> dict[str, Any]:
        """The output-neutral fields this request set, for its line in the request log."""
        names = ("user", "safety_identifier", "metadata", "store", "service_tier", "prompt_cache_key")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


# ---- chat ---------------------------------------------------------------------------------------


class ContentPart(RequestModel):
    """One part of a message's content; only "text" parts can be read (others are refused by their type)."""

    type: str
    text: Text | None = None
    image_url: Any = None
    input_audio: Any = None
    file: Any = None


class FunctionCall(RequestModel):
    name: str
    arguments: Text = Field(description="The call's arguments as JSON text (an object).")


class ToolCall(RequestModel):
    """A call the assistant made: its id (echoed by the `tool` message with the result), name and arguments."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(RequestModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Text | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = Field(None, description="An assistant turn's calls.")
    tool_call_id: str | None = Field(None, description="A tool message's answer to this call id.")
    # Fields of an assistant message that clients echo back from a response: accepted when empty.
    refusal: Unread = None
    annotations: Unread = None
    audio: Unread = None
    function_call: Unread = None

    @field_validator("tool_calls")
    @classmethod
    def _only_assistants_call(cls, tool_calls: list[ToolCall] | None, info: ValidationInfo) -> list[ToolCall] | None:
        """Calls belong to assistant turns: on another role they would be rendered as the assistant's."""
        if tool_calls and info.data.get("role", "assistant") != "assistant":
            raise ValueError(f"only assistant messages carry tool_calls, not {info.data['role']!r} ones")
        return tool_calls


def _json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Refuse a dict that is not a JSON schema (checked against the 2020-12 metaschema, the draft OpenAI reads)."""
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as error:
        path = "".join(f"[{part!r}]" for part in error.path)
        raise ValueError(f"not a valid JSON schema: {error.message} (at parameters{path})") from None
    return schema


class FunctionDefinition(RequestModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Letters, digits, _ and -, at most 64.")
    description: str | None = None
    parameters: Annotated[dict[str, Any], AfterValidator(_json_schema)] = Field(
        default_factory=lambda: {"type": "object", "properties": {}}, description="The arguments' JSON schema."
    )
    strict: bool | None = Field(None, description="Accepted; constrained calls always follow the schema.")


class Tool(RequestModel):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class FunctionName(RequestModel):
    name: str


class NamedToolChoice(RequestModel):
    type: Literal["function"] = "function"
    function: FunctionName


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class ChatCompletionRequest(SamplingRequest):
    messages: list[ChatMessage] = Field(..., min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="Newer name of max_tokens.")
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[Tool] | None = Field(None, description="Functions the model may call.")
    tool_choice: ToolChoice | None = Field(
        None, description='"auto" when tools are given: the model may call them; "required" or a named one: it must.'
    )
    parallel_tool_calls: bool | None = Field(
        None, description="Allow several calls in one answer; default: yes where the model writes its template's "
        "tool format freely, one where calls are JSON-constrained (small models repeat calls until max_tokens)."
    )
    # vLLM extensions: how the messages become the prompt
    echo: bool = Field(False, description="Begin the answer with the last message's content when it is the assistant's.")
    add_generation_prompt: bool = Field(True, description="End the prompt with the opening of the assistant's turn.")
    continue_final_message: bool = Field(
        False, description="Leave the last message open, so the answer continues it (needs add_generation_prompt false)."
    )
    chat_template_kwargs: dict[str, Any] | None = Field(
        None, description="Variables for the chat template (e.g. enable_thinking); each must be one it reads."
    )

    @field_validator("continue_final_message")
    @classmethod
    def _continue_or_open_a_turn(cls, value: bool, info: ValidationInfo) -> bool:
        """As vLLM: continuing the last message and opening a new assistant turn exclude each other."""
        if value and info.data.get("add_generation_prompt"):
            raise ValueError("cannot be true together with add_generation_prompt (true by default): send "
                             "add_generation_prompt: false to continue the last message")
        return value

    @field_validator("tools")
    @classmethod
    def _unique_names(cls, tools: list[Tool] | None) -> list[Tool] | None:
        names = [tool.function.name for tool in tools or []]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"each tool needs its own name; repeated: {', '.join(repeated)}")
        return tools

    @field_validator("tool_choice")
    @classmethod
    def _choice_among_tools(cls, choice: ToolChoice | None, info: ValidationInfo) -> ToolChoice | None:
        """A tool_choice other than "none" needs tools, and a named one must be among them."""
        if "tools" not in info.data or choice in (None, "none"):  # tools itself failed: that error is enough
            return choice
        names = [tool.function.name for tool in info.data["tools"] or []]
        if not names:
            raise ValueError("needs tools: send the functions the model may call in tools")
        if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
            raise ValueError(f"names the function {choice.function.name!r}, which is not in tools ({', '.join(names)})")
        return choice


class TopLogprob(OpenAIModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprobEntry(TopLogprob):
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChoiceLogprobs(OpenAIModel):
    content: list[TokenLogprobEntry] | None = None


class UsageInfo(OpenAIModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class AssistantMessage(OpenAIModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCall] | None = None


class ChatCompletionChoice(OpenAIModel):
    index: int
    message: AssistantMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: FinishReason | None = None


class ChatCompletionResponse(OpenAIModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatCompletionChoice]
    usage: UsageInfo


class FunctionCallDelta(OpenAIModel):
    name: str | None = None
    arguments: str = ""


class ToolCallDelta(OpenAIModel):
    """A piece of a streamed call, as OpenAI sends them: `index` orders a choice's calls; the first piece of a
    call carries its `id`, `type` and `function.name` (arguments ""), the rest append to `function.arguments`."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallDelta


class DeltaMessage(OpenAIModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChatCompletionChunkChoice(OpenAIModel):
    index: int
    delta: DeltaMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: FinishReason | None = None


class ChatCompletionChunk(OpenAIModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatCompletionChunkChoice]
    usage: UsageInfo | None = None


# ---- completions --------------------------------------------------------------------------------


class CompletionRequest(SamplingRequest):
    prompt: Text | list[Text] | list[TokenId] | list[list[TokenId]] = Field(
        ..., description="A string, a list of strings, a list of token ids, or a list of token-id lists."
    )
    logprobs: int | None = Field(None, ge=0, le=20, description="Return logprobs with this many alternatives.")
    echo: bool = Field(False, description="Begin each choice's text with its prompt.")
    suffix: str | None = None


class CompletionLogprobs(OpenAIModel):
    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float] = Field(default_factory=list)
    top_logprobs: list[dict[str, float]] = Field(default_factory=list)
    text_offset: list[int] = Field(default_factory=list)


class CompletionChoice(OpenAIModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: FinishReason | None = None


class CompletionResponse(OpenAIModel):
    """A `text_completion` object; streamed chunks have the same shape (with `usage` only at the end)."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[CompletionChoice]
    usage: UsageInfo | None = None


# ---- tokenizer ----------------------------------------------------------------------------------


class TokenizeRequest(RequestModel):
    """Either `prompt` (plain text) or `messages` (rendered with the chat template)."""

    model: str | None = None
    prompt: Text | None = None
    messages: list[ChatMessage] | None = None
    add_special_tokens: bool = True
    add_generation_prompt: bool = True


class TokenizeResponse(OpenAIModel):
    tokens: list[int]
    count: int
    max_model_len: int


class DetokenizeRequest(RequestModel):
    model: str | None = None
    tokens: list[int]


class DetokenizeResponse(OpenAIModel):
    prompt: str


# ---- embeddings ---------------------------------------------------------------------------------


class EmbeddingRequest(RequestModel):
    input: Text | list[Text] | list[int] | list[list[int]] = Field(
        ..., description="A string or a list of strings (token-id lists are not supported)."
    )
    model: str | None = Field(None, description="A sentence-transformers model; all-minilm-l6-v2 when left out.")
    encoding_format: Literal["float", "base64"] = Field("float", description="base64: little-endian float32 bytes.")
    dimensions: int | None = Field(None, ge=1, description="Accepted only when equal to the model's dimension.")
    user: str | None = Field(None, max_length=256, description="Accepted; does not change the output.")


class EmbeddingData(OpenAIModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(OpenAIModel):
    prompt_tokens: int = 0
    total_tokens: int = 0


class EmbeddingResponse(OpenAIModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingUsage


# ---- moderation ---------------------------------------------------------------------------------


class ModerationRequest(RequestModel):
    input: Text | Annotated[list[Text], Field(min_length=1)] = Field(
        ..., description="A string or a list of strings to classify."
    )
    model: str | None = Field(None, description="Echoed back; the server's safety policy decides, whatever it names.")


class ModerationResult(OpenAIModel):
    flagged: bool = Field(..., description="Whether the policy flags the input (also when it only logs).")
    categories: dict[str, bool] = Field(..., description="Every category the checkers know, and whether it is flagged.")
    category_scores: dict[str, float] = Field(..., description="Each category's highest score over the checkers.")


class ModerationResponse(OpenAIModel):
    id: str
    model: str
    results: list[ModerationResult]


class HealthResponse(OpenAIModel):
    status: Literal["ok"] = "ok"
    requests_in_flight: int = 0


# ---- retrieval (llmkit's own: /v1/rag/{kb}/query and the rag:{kb} chat models) --------------------


class RagQueryRequest(RequestModel):
    query: Text = Field(..., min_length=1, description="What to look for.")
    k: int = Field(5, ge=1, le=100, description="How many chunks to return.")
    mode: Literal["vector", "keyword", "hybrid"] = Field("hybrid", description="hybrid fuses vector and BM25 ranks.")
    sources: list[str] | None = Field(None, description="Path globs a chunk's document must match (any of them).")
    after: datetime.date | None = Field(None, description="Only documents modified on or after this date.")
    before: datetime.date | None = Field(None, description="Only documents modified on or before this date.")
    mmr: float | None = Field(None, ge=0.0, le=1.0, description="MMR weight: 1 = relevance only, lower = more diverse.")
    min_similarity: float | None = Field(None, ge=-1.0, le=1.0, description="Drop chunks less similar than this.")


class RagSource(OpenAIModel):
    path: str
    title: str
    page: int | None = None
    heading: str | None = None


class RagChunk(OpenAIModel):
    index: int
    text: str
    score: float = Field(..., description="The rank score of the search mode (fused, cosine or BM25).")
    similarity: float = Field(..., description="Cosine similarity between the query and the chunk.")
    source: RagSource


class RagQueryResponse(OpenAIModel):
    object: Literal["rag.query"] = "rag.query"
    kb: str
    data: list[RagChunk]


class RagChatCompletionResponse(ChatCompletionResponse):
    """A `rag:{kb}` answer: the chat completion plus the chunks it was given, numbered as the answer cites them."""

    sources: list[RagChunk] = Field(default_factory=list)
