"""Rerank: a query and documents in, the documents' relevance scores out, most relevant first.

``RerankRequest`` / ``RerankResponse`` are what a rerank worker speaks at
``POST …/v1/rerank``: the Jina / Cohere v1 convention that vLLM serves at
``/v1/rerank`` (and ``/rerank``) and Infinity at ``/rerank``, so either can be
a remote backend. Peers differ in details the models below absorb:

- vLLM returns ``document`` whatever ``return_documents`` says, and reads
  ``top_n: 0`` as "all"; Infinity returns ``document`` as a bare string.
  ``RerankResult`` reads all three; a caller drops what was not asked for.
- Both report ``usage.prompt_tokens`` beside ``total_tokens``: the tokens of
  every query–document pair the model read (the query once per document).

``CohereRerankRequest`` / ``CohereRerankResponse`` are Cohere's v2 shape
(``POST /v2/rerank``), which the gateway translates to and from.
"""

from __future__ import annotations

import math
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

# Cohere's documented ceiling of documents per request; a worker's own limit (engine option) is usually lower.
MAX_DOCUMENTS = 10_000
# Cohere bills a "search unit" per query with up to this many documents.
DOCUMENTS_PER_SEARCH_UNIT = 100

Truncate = Literal["END", "NONE"]


class RerankDocument(BaseModel):
    """A document given as an object (Jina, Cohere v1); fields other than ``text`` are ignored."""

    model_config = ConfigDict(extra="ignore")

    text: str


def _document_kind(value: Any) -> str:
    return "RerankDocument" if isinstance(value, (dict, RerankDocument)) else "str"


# An object is checked as an object and anything else as a string, so an error names the one that was meant
# (tags named as the types are, which error locations leave out: "documents[0].text", not "documents[0].str").
Document = Annotated[Annotated[str, Tag("str")] | Annotated[RerankDocument, Tag("RerankDocument")],
                     Discriminator(_document_kind)]


def documents_list(value: Any) -> Any:
    """``documents`` before it is read: one document, or none, is refused with a sentence that says so."""
    if isinstance(value, (str, dict)):
        raise ValueError("must be an array of documents (strings or objects with 'text'), not one document")
    if isinstance(value, list) and not value:
        raise ValueError("the list is empty; send at least one document to rank")
    return value


class RerankRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    query: str = Field(min_length=1)
    # Strings, or objects with "text"; an empty string is a document too (an empty chunk scores, it is not an error).
    documents: list[Document] = Field(min_length=1, max_length=MAX_DOCUMENTS)
    top_n: int | None = Field(None, description="return the n most relevant; default all (more than sent = all)")
    return_documents: bool = False
    # Cohere's convention for over-long input: "END" drops the end of what does not fit the model's window
    # (what every peer does by default), "NONE" refuses the request instead.
    truncate: Truncate = "END"

    @field_validator("documents", mode="before")
    @classmethod
    def _a_list(cls, value: Any) -> Any:
        return documents_list(value)

    @field_validator("top_n")
    @classmethod
    def _at_least_one(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"must be 1 or more, not {value}; leave it out to get every document back")
        return value

    @field_validator("truncate", mode="before")
    @classmethod
    def _any_case(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @property
    def texts(self) -> list[str]:
        return [doc if isinstance(doc, str) else doc.text for doc in self.documents]


class RerankUsage(BaseModel):
    prompt_tokens: int = 0
    total_tokens: int


class RerankResult(BaseModel):
    index: int = Field(ge=0, description="the document's position in the request")
    relevance_score: float
    document: RerankDocument | None = None

    @field_validator("document", mode="before")
    @classmethod
    def _bare_text(cls, value: Any) -> Any:
        return {"text": value} if isinstance(value, str) else value  # Infinity's shape


class RerankResponse(BaseModel):
    id: str = Field(default_factory=lambda: f"rerank-{uuid.uuid4().hex}")
    model: str
    usage: RerankUsage
    results: list[RerankResult] = Field(description="most relevant first")


class CohereRerankRequest(BaseModel):
    """Cohere's v2 rerank request (``client.v2.rerank``): documents are strings only."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    query: str = Field(min_length=1)
    documents: list[str] = Field(min_length=1, max_length=MAX_DOCUMENTS)
    top_n: int | None = None
    max_tokens_per_doc: int | None = Field(None, ge=1)
    return_documents: bool = False  # not in v2's published request, but clients of v1 still send it
    priority: int | None = None

    @field_validator("documents", mode="before")
    @classmethod
    def _a_list(cls, value: Any) -> Any:
        return documents_list(value)


class CohereApiVersion(BaseModel):
    version: str


class CohereBilledUnits(BaseModel):
    search_units: int


class CohereTokens(BaseModel):
    input_tokens: int


class CohereMeta(BaseModel):
    api_version: CohereApiVersion
    billed_units: CohereBilledUnits
    tokens: CohereTokens


class CohereRerankResult(BaseModel):
    index: int
    relevance_score: float
    document: RerankDocument | None = None  # only when return_documents was asked (v1 clients)


class CohereRerankResponse(BaseModel):
    """Cohere's rerank answer: ``results`` and ``meta`` (no ``model``, no ``usage``)."""

    id: str
    results: list[CohereRerankResult]
    meta: CohereMeta

    @classmethod
    def from_rerank(cls, answer: RerankResponse, documents: int, return_documents: bool,
                    api_version: str = "2") -> CohereRerankResponse:
        """Cohere's shape of a worker's answer to a request of ``documents`` documents."""
        results = [CohereRerankResult(index=r.index, relevance_score=r.relevance_score,
                                      document=r.document if return_documents else None) for r in answer.results]
        meta = CohereMeta(api_version=CohereApiVersion(version=api_version),
                          billed_units=CohereBilledUnits(search_units=math.ceil(documents / DOCUMENTS_PER_SEARCH_UNIT)),
                          tokens=CohereTokens(input_tokens=answer.usage.total_tokens))
        return cls(id=answer.id, results=results, meta=meta)
