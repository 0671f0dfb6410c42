"""Request and response bodies: OpenAI's where OpenAI has one, ours for auth and jobs."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from fabstir.models import SamplingParams

MAX_STOPS = 4
MAX_MESSAGES = 512
Text = Annotated[str, StringConstraints(max_length=1 << 20)]

model_field = Field(description="Model id, as the job names it (GET /v1/models lists them).")
max_tokens_field = Field(
    default=None, ge=1, description="Most tokens to generate; at most the job's max_tokens."
)
temperature_field = Field(default=0.0, ge=0, le=2, description="0 decodes greedily.")
top_p_field = Field(default=1.0, gt=0, le=1, description="Nucleus sampling mass.")
penalty_field = Field(default=0.0, ge=-2, le=2, description="OpenAI semantics.")
seed_field = Field(default=None, ge=0, le=2**32 - 1, description="Sampling seed.")
stop_field = Field(default=None, description="Up to 4 strings that end the answer.")
stream_field = Field(default=False, description="Send tokens as server-sent events.")
n_field = Field(default=1, ge=1, le=1, description="Only one choice per request.")


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = Field(
        default=False, description="Send a last chunk with usage before [DONE]."
    )


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: Text


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: Text | list[TextPart] = Field(description="Text, or a list of text parts.")
    name: str | None = Field(default=None, max_length=64)

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)

    def turn(self) -> dict[str, str]:
        # The chat templates know system, user and assistant; developer is OpenAI's new system.
        role = "system" if self.role == "developer" else self.role
        return {"role": role, "content": self.text()}


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = model_field
    max_tokens: int | None = max_tokens_field
    temperature: float = temperature_field
    top_p: float = top_p_field
    presence_penalty: float = penalty_field
    frequency_penalty: float = penalty_field
    seed: int | None = seed_field
    stop: str | list[str] | None = stop_field
    n: int = n_field
    stream: bool = stream_field
    stream_options: StreamOptions | None = None
    user: str | None = Field(default=None, max_length=256, description="Ignored.")
    allow_cache_reuse: bool = Field(
        default=False,
        description="Fabstir extension: with temperature > 0, accept an answer cached for the"
        " same prompt and sampling parameters, and let this one be cached (otherwise a sampled"
        " request is always a fresh draw). Answers at temperature 0 are always cacheable.",
    )

    @field_validator("stop")
    @classmethod
    def _few_stops(cls, stop: str | list[str] | None) -> str | list[str] | None:
        if isinstance(stop, list) and len(stop) > MAX_STOPS:
            raise ValueError(f"at most {MAX_STOPS} stop strings")
        if stop == "" or (isinstance(stop, list) and "" in stop):
            raise ValueError("stop strings must not be empty")
        return stop

    def sampling(self, default_max_tokens: int) -> SamplingParams:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or ())
        return SamplingParams(
            max_tokens=self.max_tokens or default_max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            seed=self.seed,
            stop=tuple(stops),
        )

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(
        min_length=1, max_length=MAX_MESSAGES, description="The conversation so far."
    )
    max_completion_tokens: int | None = max_tokens_field

    def sampling(self, default_max_tokens: int) -> SamplingParams:
        params = super().sampling(default_max_tokens)
        if self.max_completion_tokens is not None and self.max_tokens is None:
            params = params.model_copy(update={"max_tokens": self.max_completion_tokens})
        return params


class CompletionRequest(_Sampling):
    prompt: Text | list[Text] = Field(description="The prompt; a list must hold exactly one.")

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, prompt: str | list[str]) -> str | list[str]:
        if isinstance(prompt, list) and len(prompt) != 1:
            raise ValueError("exactly one prompt per request")
        return prompt

    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="The embedding model (GET /v1/models lists it).")
    input: Text | list[Text] = Field(description="A text or up to 96 texts.")
    encoding_format: Literal["float"] = "float"
    user: str | None = Field(default=None, max_length=256, description="Ignored.")

    @field_validator("input")
    @classmethod
    def _some_texts(cls, texts: str | list[str]) -> str | list[str]:
        if isinstance(texts, list) and not 1 <= len(texts) <= 96:
            raise ValueError("between 1 and 96 texts")
        return texts

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class AuthRequest(BaseModel):
    """A renter's signed request for a token to one job (see ``fabstir.client.access_message``)."""

    model_config = ConfigDict(extra="forbid")

    job_id: int = Field(ge=0, lt=2**256, description="The on-chain job id.")
    host: str = Field(pattern=r"^0x[0-9a-fA-F]{40}$", description="This host's address.")
    nonce: str = Field(pattern=r"^[0-9a-fA-F]{16,64}$", description="Random hex, used once.")
    expires_at: int = Field(ge=0, lt=2**63, description="Unix time the signature expires.")
    signature: str = Field(
        pattern=r"^0x[0-9a-fA-F]{130}$", description="EIP-191 signature of the access text."
    )


class AuthResponse(BaseModel):
    token: str = Field(description="Bearer token for this job's requests.")
    token_type: Literal["bearer"] = "bearer"
    job_id: int
    expires_at: int = Field(description="Unix time the token stops working.")


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = Field(description="The host's address.")
    price_per_token: dict[str, int] = Field(
        description="Price per output token by payment token symbol, in its base units."
    )


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class JobStatus(BaseModel):
    job_id: int
    state: str = Field(description="posted, claimed, settled, refunded or cancelled.")
    renter: str
    host: str
    model_id: str
    max_tokens: int
    tokens_used: int
    price_per_token: int
    payment_token: str
    claim_tx: str | None = None
    settle_tx: str | None = None
    result_uri: str | None = None
    result_hash: str | None = None


class JobResult(BaseModel):
    job_id: int
    output: str
    prompt_tokens: int
    completion_tokens: int
    cache_hit: bool
    result_uri: str
    result_hash: str = Field(description="SHA-256 of the stored CBOR record, as on chain.")
    record_cbor: str = Field(
        description="The stored CBOR record, base64: it hashes to result_hash."
    )


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str


class ErrorResponse(BaseModel):
    error: ErrorDetail
