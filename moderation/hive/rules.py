"""Hive's endpoint rules, kept as data in one place.

Which request fields and which media kinds each Hive endpoint type takes
(PRODUCT.md "Endpoint rules", from Hive's documentation). Everything else —
model choices, API validation, the simulator, the partner's project listing —
reads this table instead of repeating it.
"""

from __future__ import annotations

from dataclasses import dataclass

# Media kinds as the portal names them after sniffing the bytes.
IMAGE, GIF, VIDEO, AUDIO, TEXT = "image", "gif", "video", "audio", "text"
MEDIA_KINDS = (IMAGE, GIF, VIDEO, AUDIO, TEXT)

# Request fields Hive takes for the content itself.
MEDIA_FIELD, URL_FIELD, TEXT_FIELD = "media", "url", "text_data"
CONTENT_FIELDS = (MEDIA_FIELD, URL_FIELD, TEXT_FIELD)


@dataclass(frozen=True)
class EndpointRule:
    fields: tuple[str, ...]
    media: tuple[str, ...]

    def accepts_field(self, field: str) -> bool:
        return field in self.fields

    def accepts_media(self, kind: str) -> bool:
        return kind in self.media


_VISUAL = EndpointRule(fields=(MEDIA_FIELD, URL_FIELD), media=(IMAGE, GIF, VIDEO))

ENDPOINT_RULES: dict[str, EndpointRule] = {
    "visual": _VISUAL,
    "ocr": _VISUAL,
    "logo": _VISUAL,
    "scene": _VISUAL,
    "face": _VISUAL,
    "speech": EndpointRule(fields=(MEDIA_FIELD, URL_FIELD), media=(AUDIO, VIDEO)),
    "text": EndpointRule(fields=(TEXT_FIELD,), media=(TEXT,)),
}

ENDPOINT_TYPES = tuple(ENDPOINT_RULES)

# Hive's default text limit; a project may be granted more.
DEFAULT_TEXT_LIMIT = 1024


def rule_for(endpoint_type: str) -> EndpointRule:
    try:
        return ENDPOINT_RULES[endpoint_type]
    except KeyError:
        raise ValueError(f"unknown Hive endpoint type {endpoint_type!r}") from None
