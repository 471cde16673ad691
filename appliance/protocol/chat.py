"""POST /v1/inference/chat and /oai/v1/chat/completions: OpenAI's chat-completion request.

The gateway checks everything a client can get wrong here, so that a mistake is
a VALIDATION_ERROR naming the field, never an engine failure. Responses are the
engine's own OpenAI objects, relayed; the response models below document them
and type the transformers worker's answers.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from appliance.protocol.sampling import SamplingFields

TOOL_NAME = r"^[A-Za-z0-9_-]{1,64}$"


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ImageUrl(BaseModel):
    url: str = Field(min_length=1, description="a data: URL, this appliance's /v1/media/tok_… URL, "
                     "scaigrid://file/{file_id}, or http(s) on a host of the media_url_allow setting")
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(BaseModel):
    type: Literal["image_url"]
    image_url: ImageUrl


class InputAudio(BaseModel):
    data: str = Field(min_length=1, description="the audio file, base64")
    format: Literal["wav", "mp3"]


class AudioPart(BaseModel):
    type: Literal["input_audio"]
    input_audio: InputAudio


class FileData(BaseModel):
    file_id: str | None = Field(None, min_length=1, description="a file uploaded through /oai/v1/files")
    file_data: str | None = Field(None, min_length=1, description="the file, base64 (or a base64 data: URL)")
    filename: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> FileData:
        if (self.file_id is None) == (self.file_data is None):
            raise ValueError("give exactly one of 'file_id' and 'file_data'")
        return self


class FilePart(BaseModel):
    """OpenAI's file part; on this appliance the file is an image or a sound, taken as the model takes those."""

    type: Literal["file"]
    file: FileData


PART_TYPES = ("text", "image_url", "input_audio", "file")
UserPart = Annotated[TextPart | ImagePart | AudioPart | FilePart, Field(discriminator="type")]
MediaPart = ImagePart | AudioPart | FilePart


class SystemMessage(BaseModel):
    role: Literal["system", "developer"]
    content: str | Annotated[list[TextPart], Field(min_length=1)]
    name: str | None = None


class UserMessage(BaseModel):
    role: Literal["user"]
    content: str | Annotated[list[UserPart], Field(min_length=1)]
    name: str | None = None


class FunctionCall(BaseModel):
    name: str = Field(pattern=TOOL_NAME)
    arguments: str  # a JSON object, as a string (OpenAI's convention)


class ToolCall(BaseModel):
    id: str = Field(min_length=1)
    type: Literal["function"] = "function"
    function: FunctionCall


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str | list[TextPart] | None = None
    tool_calls: list[ToolCall] | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _says_something(self) -> AssistantMessage:
        if self.content is None and not self.tool_calls:
            raise ValueError("an assistant message needs 'content' or 'tool_calls'")
        return self


class ToolMessage(BaseModel):
    role: Literal["tool"]
    content: str | Annotated[list[TextPart], Field(min_length=1)]
    tool_call_id: str = Field(min_length=1)


Message = Annotated[SystemMessage | UserMessage | AssistantMessage | ToolMessage, Field(discriminator="role")]
ROLES = ("system", "developer", "user", "assistant", "tool")


class FunctionDefinition(BaseModel):
    name: str = Field(pattern=TOOL_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    @model_validator(mode="after")
    def _parameters_are_an_object_schema(self) -> FunctionDefinition:
        kind = (self.parameters or {}).get("type", "object")
        if kind != "object":
            raise ValueError("'parameters' must be a JSON schema of type 'object'")
        return self


class Tool(BaseModel):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(BaseModel):
    name: str = Field(min_length=1)


class NamedToolChoice(BaseModel):
    type: Literal["function"]
    function: NamedFunction


class StreamOptions(BaseModel):
    include_usage: bool | None = None
    continuous_usage_stats: bool | None = None


class ChatRequest(SamplingFields):
    model_config = ConfigDict(extra="ignore")

    messages: Annotated[list[Message], Field(min_length=1)]
    max_completion_tokens: int | None = Field(None, ge=1, description="OpenAI's newer name for max_tokens")
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: dict[str, Any] | None = None
    stream_options: StreamOptions | None = None

    @model_validator(mode="after")
    def _one_name_for_max_tokens(self) -> ChatRequest:
        if self.max_tokens is None and self.max_completion_tokens is not None:
            self.max_tokens = self.max_completion_tokens
        self.max_completion_tokens = None
        return self

    def tool_problem(self) -> tuple[str, str] | None:
        """(field, message) when ``tools`` and ``tool_choice`` do not fit together."""
        names = [tool.function.name for tool in self.tools or []]
        for index, name in enumerate(names):
            if name in names[:index]:
                return f"tools[{index}].function.name", f"a second tool is named '{name}'; names must differ"
        choice = self.tool_choice
        if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
            given = ", ".join(names) or "none"
            return ("tool_choice.function.name",
                    f"names the tool '{choice.function.name}', which is not among the tools given ({given})")
        if choice == "required" and not names:
            return "tool_choice", "'required' needs at least one tool in 'tools'"
        return None


class CompletionRequest(SamplingFields):
    """POST /v1/inference/generate and /oai/v1/completions: a raw prompt."""

    model_config = ConfigDict(extra="ignore")

    prompt: (Annotated[str, Field(min_length=1)] | Annotated[list[Annotated[str, Field(min_length=1)]],
                                                             Field(min_length=1)]
             | Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)])
    echo: bool | None = None
    logprobs: int | None = Field(None, ge=0, le=5)
    stream_options: StreamOptions | None = None


class TokenizeRequest(BaseModel):
    """vLLM's POST /tokenize: count a chat's prompt (chat template included) or a raw prompt's tokens."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    messages: list[Message] | None = None
    tools: list[Tool] | None = None
    prompt: str | None = None


class TokenizeResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")  # vLLM also sends the tokens themselves

    count: int
    max_model_len: int | None = None


# --- responses (what the engines answer; relayed as they come) -------------


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    tool_calls: list[ToolCall] | None = None


class ChatChoice(BaseModel):
    index: int
    message: ResponseMessage
    finish_reason: Literal["stop", "length", "tool_calls"] | None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: Literal["stop", "length"] | None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage
