"""URL building blocks of the partner API: ids as partners' languages print
them, and routes that answer with or without their trailing slash."""

from __future__ import annotations

import uuid

from django.urls import URLPattern, register_converter
from django.urls.resolvers import RoutePattern

UUID_HEX = "[0-9a-fA-F]"


class AnyCaseUUIDConverter:
    """`<anyuuid:pk>`: a UUID in either case, with or without its dashes.

    Django's `uuid` converter takes lower case only, and Swift's `uuidString`
    is upper case: an existing submission was a 404. The view gets a UUID, and
    reverse() writes the canonical lower-case form."""

    regex = f"(?:{UUID_HEX}{{8}}-{UUID_HEX}{{4}}-{UUID_HEX}{{4}}-{UUID_HEX}{{4}}-{UUID_HEX}{{12}}|{UUID_HEX}{{32}})"

    def to_python(self, value: str) -> uuid.UUID:
        return uuid.UUID(value)

    def to_url(self, value) -> str:
        return str(value)


register_converter(AnyCaseUUIDConverter, "anyuuid")


class SlashOptionalRoutePattern(RoutePattern):
    """A route ending in "/" that matches without it too.

    Without the slash, CommonMiddleware (APPEND_SLASH) answered 301, and a
    client following it turned the POST into a GET and dropped the upload.
    The route itself, so reverse() and the OpenAPI document, keeps the slash."""

    def match(self, path):
        return super().match(path if path.endswith("/") else path + "/")


def api_path(route: str, view, name: str) -> URLPattern:
    """path() for an API route (ending in "/") that also answers without the slash."""
    return URLPattern(SlashOptionalRoutePattern(route, name=name, is_endpoint=True), view, name=name)
