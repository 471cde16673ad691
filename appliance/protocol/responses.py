"""POST /oai/v1/responses and its siblings: OpenAI's Responses API, the request and every object it answers with.

The request is checked here as far as it can be without the state DB: item
and part types, function tools, tool_choice, text.format (a json_schema must be
a schema). A hosted tool, an unknown item type, a Conversations or prompt
template reference is refused naming its field. The answer objects and the
streamed events follow OpenAI's document (``shared/openai-openapi.yaml``); the
service builds the hot events (text deltas) from byte templates that a test
holds equal to these models.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from appliance.protocol.chat import TOOL_NAME
from appliance.protocol.json_schema import schema_problem

MAX_METADATA = 16
ITEM_TYPES = ("message", "function_call", "function_call_output")
HOSTED_TOOLS = ("file_search", "web_search", "web_search_preview", "computer_use_preview", "computer", "mcp",
                "code_interpreter", "image_generation", "local_shell", "shell", "custom", "apply_patch",
                "tool_search", "namespace", "programmatic_tool_calling")
Status = Literal["completed", "failed", "in_progress", "cancelled", "queued", "incomplete"]
ItemStatus = Literal["in_progress", "completed", "incomplete"]


def _type_of(value: Any, default: str | None = None) -> str | None:
    if isinstance(value, dict):
        kind = value.get("type", default)
        return kind if isinstance(kind, str) else "?"
    return getattr(value, "type", None)


def _tag(known: tuple[str, ...], default: str | None = None) -> Any:
    """A discriminator that sends every type it does not know to the ``unsupported`` branch, which names it."""

    def tag(value: Any) -> str | None:
        kind = _type_of(value, default)
        if kind is None:
            return None
        return kind if kind in known else "unsupported"

    return Discriminator(tag)


# --- input: content parts and items ------------------------------------------------------------------------------


class InputText(BaseModel):
    type: Literal["input_text"]
    text: str


class InputImage(BaseModel):
    """An image by ``image_url`` (a data: URL, the box's media URL, ``scaigrid://file/…``, an allowed http(s) host)
    or by the ``file_id`` of an upload; read and checked as chat's ``image_url`` part is."""

    type: Literal["input_image"]
    image_url: str | None = Field(None, min_length=1)
    file_id: str | None = Field(None, min_length=1)
    detail: Literal["low", "high", "auto", "original"] | None = "auto"  # null: OpenAI's request schema allows it

    @model_validator(mode="after")
    def _one_source(self) -> InputImage:
        if (self.image_url is None) == (self.file_id is None):
            raise ValueError("an input_image needs exactly one of 'image_url' and 'file_id'")
        return self


class InputFile(BaseModel):
    """A file by ``file_id``, ``file_data`` (base64, or a base64 data: URL) or ``file_url``: on this appliance an
    image or a sound, taken as chat's ``file`` part takes it (``file_url`` as an image's URL is read)."""

    type: Literal["input_file"]
    file_id: str | None = Field(None, min_length=1)
    file_data: str | None = Field(None, min_length=1)
    file_url: str | None = Field(None, min_length=1)
    filename: str | None = None
    detail: Literal["low", "high", "auto"] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> InputFile:
        if sum(source is not None for source in (self.file_id, self.file_data, self.file_url)) != 1:
            raise ValueError("an input_file needs exactly one of 'file_id', 'file_data' and 'file_url'")
        return self


class OutputText(BaseModel):
    """The text of an assistant message: in the output, and in input that carries an earlier answer back."""

    type: Literal["output_text"]
    text: str
    annotations: list[Any] = Field(default_factory=list)
    logprobs: list[Any] = Field(default_factory=list)


class Refusal(BaseModel):
    type: Literal["refusal"]
    refusal: str


class UnsupportedPart(BaseModel):
    """A part this appliance cannot take (``input_audio``, which OpenAI's Responses API has not either): refused
    naming its type."""

    type: str

    @field_validator("type")
    @classmethod
    def _refused(cls, value: str) -> str:
        raise ValueError(f"content parts of type '{value[:40]}' are not supported on this appliance; it takes "
                         "input_text, input_image, input_file (an image or a sound) and, in assistant messages, "
                         "output_text or refusal")


PART_TYPES = ("input_text", "input_image", "input_file", "output_text", "refusal")
Part = Annotated[Annotated[InputText, Tag("input_text")] | Annotated[InputImage, Tag("input_image")]
                 | Annotated[InputFile, Tag("input_file")]
                 | Annotated[OutputText, Tag("output_text")] | Annotated[Refusal, Tag("refusal")]
                 | Annotated[UnsupportedPart, Tag("unsupported")], _tag(PART_TYPES)]


class MessageItem(BaseModel):
    """A message: OpenAI's "easy" input message (``type`` may be left out) or a full one."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["message"] = "message"
    id: str | None = None
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[Part]
    status: ItemStatus | None = None


class FunctionCallItem(BaseModel):
    """A call of a function tool the model made, carried back as input."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["function_call"]
    id: str | None = None
    call_id: str = Field(min_length=1, max_length=128)
    name: str = Field(min_length=1, max_length=128)
    arguments: str
    status: ItemStatus | None = None


class FunctionCallOutputItem(BaseModel):
    """The result of a function call, which the client ran."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["function_call_output"]
    id: str | None = None
    call_id: str = Field(min_length=1, max_length=128)
    output: str | list[Part]
    status: ItemStatus | None = None


class UnsupportedItem(BaseModel):
    type: str

    @field_validator("type")
    @classmethod
    def _refused(cls, value: str) -> str:
        raise ValueError(f"input items of type '{value[:40]}' are not supported on this appliance; it takes "
                         "'message', 'function_call' and 'function_call_output' items")


InputItem = Annotated[Annotated[MessageItem, Tag("message")] | Annotated[FunctionCallItem, Tag("function_call")]
                      | Annotated[FunctionCallOutputItem, Tag("function_call_output")]
                      | Annotated[UnsupportedItem, Tag("unsupported")], _tag(ITEM_TYPES, default="message")]


# --- tools, tool_choice, text.format -----------------------------------------------------------------------------


class FunctionTool(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["function"]
    name: str = Field(pattern=TOOL_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    @field_validator("parameters")
    @classmethod
    def _object_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        if value.get("type", "object") != "object":
            raise ValueError("must be a JSON schema of type 'object'")
        problem = schema_problem(value)
        if problem is not None:
            raise ValueError(f"not a JSON schema: {problem}")
        return value


class HostedTool(BaseModel):
    type: str

    @field_validator("type")
    @classmethod
    def _refused(cls, value: str) -> str:
        what = "a hosted tool" if value in HOSTED_TOOLS else "a tool type"
        raise ValueError(f"'{value[:40]}' is {what} this appliance does not have; only 'function' tools run here "
                         "(the client runs them)")


Tool = Annotated[Annotated[FunctionTool, Tag("function")] | Annotated[HostedTool, Tag("unsupported")],
                 _tag(("function",))]


class FunctionChoice(BaseModel):
    type: Literal["function"]
    name: str = Field(min_length=1)


class HostedChoice(BaseModel):
    type: str

    @field_validator("type")
    @classmethod
    def _refused(cls, value: str) -> str:
        raise ValueError(f"'{value[:40]}' cannot be chosen here; tool_choice takes 'none', 'auto', 'required' or "
                         "{'type': 'function', 'name': …}")


ToolChoice = (Literal["none", "auto", "required"]
              | Annotated[Annotated[FunctionChoice, Tag("function")] | Annotated[HostedChoice, Tag("unsupported")],
                          _tag(("function",))])


class FormatText(BaseModel):
    type: Literal["text"]


class FormatJsonObject(BaseModel):
    type: Literal["json_object"]


class FormatJsonSchema(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    type: Literal["json_schema"]
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    json_schema: dict[str, Any] = Field(alias="schema")
    description: str | None = None
    strict: bool | None = None

    @field_validator("json_schema")
    @classmethod
    def _a_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        problem = schema_problem(value)
        if problem is not None:
            raise ValueError(f"not a JSON schema: {problem}")
        return value


TextFormat = Annotated[FormatText | FormatJsonObject | FormatJsonSchema, Field(discriminator="type")]


class TextParam(BaseModel):
    model_config = ConfigDict(extra="ignore")

    format: TextFormat = Field(default_factory=lambda: FormatText(type="text"))
    verbosity: Literal["low", "medium", "high"] | None = None


# --- the request -------------------------------------------------------------------------------------------------


class ResponseRequest(BaseModel):
    """POST /oai/v1/responses. Fields OpenAI has and this appliance ignores (``include``, ``reasoning``,
    ``service_tier``, ``prompt_cache_key``, …) are accepted and have no effect."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    input: Annotated[str, Field(min_length=1)] | Annotated[list[InputItem], Field(min_length=1)]
    instructions: str | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextParam | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_output_tokens: int | None = Field(None, ge=1)
    metadata: dict[str, str] | None = None
    store: bool | None = True
    stream: bool | None = False
    background: bool | None = False
    previous_response_id: str | None = Field(None, min_length=1, max_length=64)
    truncation: Literal["auto", "disabled"] | None = "disabled"
    user: str | None = None
    # vLLM's sampling extras, as chat takes them (the SDK's extra_body)
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1, description="repeatable sampling")
    top_k: int | None = Field(None, ge=-1)
    min_p: float | None = Field(None, ge=0, le=1)
    repetition_penalty: float | None = Field(None, gt=0, le=2)
    min_tokens: int | None = Field(None, ge=0)
    ignore_eos: bool | None = None
    conversation: Any = Field(None, description="not supported: use previous_response_id")
    prompt: Any = Field(None, description="not supported: prompt templates live on OpenAI's platform")

    @field_validator("metadata")
    @classmethod
    def _small(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None and len(value) > MAX_METADATA:
            raise ValueError(f"at most {MAX_METADATA} pairs")
        if value is not None and any(len(k) > 64 or len(v) > 512 for k, v in value.items()):
            raise ValueError("keys may have 64 characters, values 512")
        return value

    @field_validator("conversation", "prompt")
    @classmethod
    def _not_here(cls, value: Any, info: Any) -> Any:
        if value is None:
            return None
        if info.field_name == "conversation":
            raise ValueError("the Conversations API is not supported on this appliance; chain responses with "
                             "previous_response_id")
        raise ValueError("stored prompt templates are not supported on this appliance; send the prompt as input")

    @property
    def stored(self) -> bool:
        return self.store is not False

    @property
    def streamed(self) -> bool:
        return bool(self.stream)

    @property
    def in_background(self) -> bool:
        return bool(self.background)

    def problem(self) -> tuple[str, str] | None:
        """(field, message) for what fits no single field: names that clash, a choice of no tool, and the like."""
        names = [tool.name for tool in self.tools or [] if isinstance(tool, FunctionTool)]
        for index, name in enumerate(names):
            if name in names[:index]:
                return f"tools[{index}].name", f"a second tool is named '{name}'; names must differ"
        choice = self.tool_choice
        if isinstance(choice, FunctionChoice) and choice.name not in names:
            return "tool_choice.name", (f"names the tool '{choice.name}', which is not among the tools given "
                                        f"({', '.join(names) or 'none'})")
        if choice == "required" and not names:
            return "tool_choice", "'required' needs at least one tool in 'tools'"
        if self.in_background and not self.stored:
            return "background", "a background response must be stored: leave 'store' out or set it true"
        return None


# --- what it answers with ----------------------------------------------------------------------------------------


class OutputMessage(BaseModel):
    type: Literal["message"] = "message"
    id: str
    status: ItemStatus
    role: Literal["assistant"] = "assistant"
    content: list[OutputText | Refusal]


class FunctionCall(BaseModel):
    type: Literal["function_call"] = "function_call"
    id: str
    call_id: str
    name: str
    arguments: str
    status: ItemStatus


OutputItem = Annotated[OutputMessage | FunctionCall, Field(discriminator="type")]


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class ResponseUsage(BaseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens: int
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int


class ResponseError(BaseModel):
    code: Literal["server_error", "rate_limit_exceeded", "invalid_prompt"]
    message: str


class IncompleteDetails(BaseModel):
    reason: Literal["max_output_tokens", "content_filter"]


class Response(BaseModel):
    """The Response object, as created, retrieved, cancelled and carried by the lifecycle events."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: Status
    background: bool
    completed_at: int | None = None
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    model: str
    output: list[OutputItem] = Field(default_factory=list)
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    reasoning: dict[str, Any] | None = None
    store: bool
    temperature: float | None = None
    text: TextParam
    tool_choice: Literal["none", "auto", "required"] | FunctionChoice = "auto"
    tools: list[FunctionTool] = Field(default_factory=list)
    top_p: float | None = None
    truncation: Literal["auto", "disabled"] = "disabled"
    usage: ResponseUsage | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    user: str | None = Field(None, exclude_if=lambda value: value is None)  # a string or absent, never null


class DeletedResponse(BaseModel):
    id: str
    object: Literal["response"] = "response"
    deleted: Literal[True] = True


class InputMessageResource(BaseModel):
    type: Literal["message"] = "message"
    id: str
    role: Literal["user", "system", "developer"]
    status: ItemStatus = "completed"
    content: list[InputText | InputImage | InputFile]


class FunctionCallOutputResource(BaseModel):
    type: Literal["function_call_output"] = "function_call_output"
    id: str
    call_id: str
    output: str | list[InputText | InputImage | InputFile]
    status: ItemStatus = "completed"


ItemResource = InputMessageResource | OutputMessage | FunctionCall | FunctionCallOutputResource


class InputItemList(BaseModel):
    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool


class InputItemsQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    limit: int = Field(20, ge=1, le=100)
    order: Literal["asc", "desc"] = "desc"
    after: str | None = None


class RetrieveQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    stream: bool = False
    starting_after: int | None = Field(None, ge=-1)


# --- the streamed events -----------------------------------------------------------------------------------------


class LifecycleEvent(BaseModel):
    """response.created, .queued, .in_progress, .completed, .incomplete, .failed: the whole Response."""

    type: Literal["response.created", "response.queued", "response.in_progress", "response.completed",
                  "response.incomplete", "response.failed"]
    response: Response
    sequence_number: int


class OutputItemEvent(BaseModel):
    type: Literal["response.output_item.added", "response.output_item.done"]
    output_index: int
    item: OutputItem
    sequence_number: int


class ContentPartEvent(BaseModel):
    type: Literal["response.content_part.added", "response.content_part.done"]
    item_id: str
    output_index: int
    content_index: int
    part: OutputText
    sequence_number: int


class TextDeltaEvent(BaseModel):
    type: Literal["response.output_text.delta"] = "response.output_text.delta"
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[Any] = Field(default_factory=list)
    sequence_number: int


class TextDoneEvent(BaseModel):
    type: Literal["response.output_text.done"] = "response.output_text.done"
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[Any] = Field(default_factory=list)
    sequence_number: int


class ArgumentsDeltaEvent(BaseModel):
    type: Literal["response.function_call_arguments.delta"] = "response.function_call_arguments.delta"
    item_id: str
    output_index: int
    delta: str
    sequence_number: int


class ArgumentsDoneEvent(BaseModel):
    type: Literal["response.function_call_arguments.done"] = "response.function_call_arguments.done"
    item_id: str
    name: str
    output_index: int
    arguments: str
    sequence_number: int


class ErrorEvent(BaseModel):
    type: Literal["error"] = "error"
    code: str | None
    message: str
    param: str | None = None
    sequence_number: int


StreamEvent = Annotated[LifecycleEvent | OutputItemEvent | ContentPartEvent | TextDeltaEvent | TextDoneEvent
                        | ArgumentsDeltaEvent | ArgumentsDoneEvent | ErrorEvent, Field(discriminator="type")]
