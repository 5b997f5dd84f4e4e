"""OpenAPI: the error body every partner operation answers with, documented.

Every error is JSON (moderation/api/exceptions.py): `{"detail": "..."}` for the
request as a whole, or each refused field (or header) named with its reasons,
`{"text_data": ["..."]}`. Views name their own 4xx answers with `error(...)`;
the hook adds the two every authenticated operation can answer: 401 and 429,
and types the ids of `<anyuuid:...>` routes (moderation/api/routes.py) as UUIDs.
"""

from __future__ import annotations

from drf_spectacular.plumbing import anchor_pattern
from drf_spectacular.utils import OpenApiResponse

from moderation.api.routes import AnyCaseUUIDConverter

ERROR_COMPONENT = "Error"
ERROR_SCHEMA = {
    "type": "object",
    "description": "`detail` for the request as a whole, or each refused field (or header) named with its "
                   "reasons.",
    "properties": {"detail": {"type": "string"}},
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
    "minProperties": 1,
}
ERROR_REF = {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}
# How drf-spectacular documents an `<anyuuid:...>` path id: a string with the converter's regex.
ANY_CASE_UUID = {"type": "string", "pattern": anchor_pattern(AnyCaseUUIDConverter.regex)}


def error(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=ERROR_REF, description=description)


def _json_error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": ERROR_REF}}}


def add_common_errors(result, generator, request, public):
    """drf-spectacular postprocessing hook: the Error component, and 401/429 on
    every operation that takes a partner key. Also documents `<anyuuid:...>`
    ids as UUIDs, as they were under Django's `uuid` converter: typed clients
    generated from the document take a UUID, and send its canonical form."""
    result.setdefault("components", {}).setdefault("schemas", {})[ERROR_COMPONENT] = ERROR_SCHEMA
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter.get("schema") == ANY_CASE_UUID:
                    parameter["schema"] = {"type": "string", "format": "uuid"}
            if not operation.get("security"):
                continue
            responses = operation.setdefault("responses", {})
            responses.setdefault("401", _json_error("No, bad or revoked API key"))
            throttled = _json_error("Over the partner's request rate")
            throttled["headers"] = {"Retry-After": {
                "schema": {"type": "integer", "minimum": 1},
                "description": "Seconds to wait before the next request.",
            }}
            responses.setdefault("429", throttled)
    return result
