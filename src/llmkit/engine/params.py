"""Per-request sampling parameters, named as in transformers' `GenerationConfig`.

Every request carries its own `SamplingParams`, so one batch can mix greedy, sampled and
penalised requests. Validation happens here, once, with messages that name the parameter.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from llmkit.errors import InvalidRequestError
from llmkit.validation import describe


class ResponseFormat(BaseModel):
    """The shape the output must take, as OpenAI's `response_format`: free text, any JSON object, or a schema.

    Constrained output is complete JSON when it ends with finish_reason "stop"; cut off by
    max_new_tokens ("length") or a stop string, it is a prefix of such JSON, as with OpenAI.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["text", "json_object", "json_schema"] = Field("text", description="What the output must be.")
    json_schema: dict[str, Any] | None = Field(
        None, description='For type "json_schema": {"name": ..., "schema": {...}, "strict": ...}, as in OpenAI.'
    )

    @model_validator(mode="after")
    def _schema_matches_type(self) -> ResponseFormat:
        if self.type == "json_schema" and not isinstance((self.json_schema or {}).get("schema"), dict):
            raise ValueError('type "json_schema" needs the schema as an object: {"name": ..., "schema": {...}}')
        if self.type != "json_schema" and self.json_schema is not None:
            raise ValueError(f'json_schema is only read with type "json_schema", not {self.type!r}')
        return self

    @property
    def constrained(self) -> bool:
        """True when decoding must follow a grammar (any type but "text")."""
        return self.type != "text"


GREEDY_BELOW = 1e-5
MAX_LOGIT_BIAS = 100.0  # OpenAI's bound: -100 bans a token, +100 all but forces it

TokenId = Annotated[int, Field(ge=0)]


class SamplingParams(BaseModel):
    """How to decode one request: strategy, logits processors and stopping rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_new_tokens: int = Field(256, ge=1, description="Most tokens to generate.")
    min_new_tokens: int = Field(0, ge=0, description="EOS and stop tokens are masked until this many.")
    do_sample: bool = Field(False, description="Sample from the distribution instead of taking the argmax.")
    temperature: float = Field(1.0, ge=0.0, description="Divide logits by this; 0 means greedy.")
    top_k: int = Field(0, ge=0, description="Keep the k most likely tokens; 0 disables.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Keep the smallest set with this much probability.")
    min_p: float = Field(0.0, ge=0.0, le=1.0, description="Drop tokens below min_p times the top probability.")
    repetition_penalty: float = Field(1.0, gt=0.0, description="HF semantics: divide positive logits of seen tokens.")
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0, description="OpenAI semantics, over generated tokens.")
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0, description="OpenAI semantics, over generated tokens.")
    no_repeat_ngram_size: int = Field(0, ge=0, description="Forbid repeating any n-gram of this size; 0 disables.")
    num_beams: int = Field(1, ge=1, description="Beam width; 1 means no beam search.")
    length_penalty: float = Field(1.0, description="Beam score = sum logprob / length ** length_penalty.")
    early_stopping: bool | Literal["never"] = Field(False, description="Beam stopping rule, as in transformers.")
    num_return_sequences: int = Field(1, ge=1, description="Sequences returned per prompt.")
    stop: list[str] = Field(default_factory=list, description="Stop strings; the stop string is not returned.")
    include_stop_str_in_output: bool = Field(False, description="Return the stop string that ended the text (vLLM).")
    stop_token_ids: list[TokenId] = Field(default_factory=list, description="Extra token ids that end generation.")
    logit_bias: dict[TokenId, Annotated[float, Field(ge=-MAX_LOGIT_BIAS, le=MAX_LOGIT_BIAS)]] = Field(
        default_factory=dict, description="Token id -> bias added to its logit before any other processor (OpenAI)."
    )
    ignore_eos: bool = Field(False, description="Keep generating past the model's EOS token.")
    seed: int | None = Field(
        None, ge=-(2**63), lt=2**64, description="Seed of this request's own random generator (64-bit)."
    )
    logprobs: int | None = Field(None, ge=0, le=20, description="Return the chosen token's logprob and this many alternatives.")
    skip_special_tokens: bool = Field(True, description="Drop special tokens from the returned text.")
    response_format: ResponseFormat | None = Field(None, description="Hold the output to JSON or a JSON schema.")

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_as_list(cls, value: str | list[str] | None) -> list[str]:
        if value is None:
            return []
        return [value] if isinstance(value, str) else value

    @field_validator("stop")
    @classmethod
    def _stop_not_empty(cls, value: list[str]) -> list[str]:
        if any(s == "" for s in value):
            raise ValueError("stop strings must not be empty")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SamplingParams:
        if self.min_new_tokens > self.max_new_tokens:
            raise ValueError(f"min_new_tokens ({self.min_new_tokens}) exceeds max_new_tokens ({self.max_new_tokens})")
        if self.num_beams > 1:
            if self.sampling:
                raise ValueError("beam search is deterministic: use num_beams=1 with do_sample=True, or do_sample=False")
            if self.logprobs is not None:
                raise ValueError("beam search does not return logprobs: leave logprobs out, or use num_beams=1")
            if self.num_return_sequences > self.num_beams:
                raise ValueError(
                    f"num_return_sequences ({self.num_return_sequences}) must be <= num_beams ({self.num_beams})"
                )
        elif self.num_return_sequences > 1 and not self.sampling:
            raise ValueError("greedy decoding returns one sequence: set do_sample=True or num_beams>1")
        if self.constrained:
            if self.beam_search:
                raise ValueError("beam search does not support response_format: use num_beams=1")
            # Either can forbid every token the grammar allows at some step, leaving nothing to choose.
            if self.min_new_tokens or self.no_repeat_ngram_size:
                raise ValueError("response_format cannot be combined with min_new_tokens or no_repeat_ngram_size")
        return self

    @property
    def constrained(self) -> bool:
        """True when a response_format restricts which tokens may come next."""
        return self.response_format is not None and self.response_format.constrained

    @property
    def sampling(self) -> bool:
        """True when tokens are drawn at random: do_sample with a temperature that does not overflow the logits.

        Temperatures under 1e-5 decode greedily (as in vLLM): dividing logits by them gives inf / NaN.
        """
        return self.do_sample and self.temperature >= GREEDY_BELOW

    @property
    def beam_search(self) -> bool:
        return self.num_beams > 1

    @classmethod
    def create(cls, **kwargs: object) -> SamplingParams:
        """Build and validate, turning pydantic's errors into one `InvalidRequestError`."""
        try:
            return cls(**kwargs)
        except ValidationError as exc:
            message = describe(exc.errors(), unknown="unknown parameter")
            raise InvalidRequestError(f"invalid sampling parameters: {message}") from None
