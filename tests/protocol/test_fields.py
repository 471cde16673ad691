"""Error locations as the field names a client wrote."""

from __future__ import annotations

from appliance.protocol.fields import field_path


def test_a_body_field_named_like_a_source_is_still_named() -> None:
    assert field_path(("query",)) == "query"  # rerank's query, as a body validated on its own reports it
    assert field_path(("body", "query")) == "query"  # and as FastAPI reports it
    assert field_path(("query", "limit")) == "limit"  # a query-string parameter
    assert field_path(("body",)) == "body"
