"""Decide what kind of media a file is from its bytes.

PRODUCT.md: the media kind is decided by sniffing the bytes, never by the file
name or the client's Content-Type. `filetype` knows the magic numbers; a few
containers (ASF, MP4/MOV/3GP, Ogg, Matroska) hold either video or audio only,
so for those the small parsers below look at the streams, reading box and
element headers rather than payloads. Cheap structural checks refuse files that
are visibly broken, so a partner hears about it at once instead of from a Hive
"corrupt file" error minutes later.
"""

from __future__ import annotations

import codecs
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import filetype

from moderation.hive.rules import AUDIO, GIF, IMAGE, VIDEO

HEAD_BYTES = 8192  # what filetype itself looks at
TAIL_BYTES = 1024  # where image end markers are looked for
SCAN_LIMIT = 1024 * 1024  # upper bound for reading a container header whole
MAX_ELEMENTS = 10_000  # a crafted file with millions of tiny boxes must not stall a worker
MIN_AV_BYTES = 128  # smaller than any container header plus one frame

ACCEPTED_FORMATS = (
    "an image (jpg, png, bmp, gif, webp), a video (mp4, mov, webm, mkv, avi, wmv, flv, 3gp, ogx, h264) "
    "or audio (mp3, wav, flac, ogg, opus, aiff, wma)"
)

# The formats Hive takes (HIVE_API.md), by the extension filetype (or _guess_extra) reports.
_KIND_BY_EXTENSION = {
    "jpg": IMAGE,
    "png": IMAGE,
    "apng": IMAGE,
    "bmp": IMAGE,
    "webp": IMAGE,
    "gif": GIF,
    "mp4": VIDEO,
    "m4v": VIDEO,
    "mov": VIDEO,
    "3gp": VIDEO,
    "mkv": VIDEO,
    "webm": VIDEO,
    "avi": VIDEO,
    "wmv": VIDEO,
    "flv": VIDEO,
    "h264": VIDEO,
    "mp3": AUDIO,
    "m4a": AUDIO,
    "ogg": AUDIO,
    "flac": AUDIO,
    "wav": AUDIO,
    "aiff": AUDIO,
}


@dataclass(frozen=True)
class MediaInfo:
    kind: str  # one of rules.IMAGE, GIF, VIDEO, AUDIO
    mime: str
    extension: str  # named as in Hive's format list where it has a name for it


class MediaError(Exception):
    """A file the portal will not send to Hive; the message is for the partner."""

    code = "invalid_media"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class EmptyMedia(MediaError):
    code = "empty_media"

    def __init__(self) -> None:
        super().__init__("The file is empty.")


class UnsupportedMedia(MediaError):
    code = "unsupported_media"

    def __init__(self, description: str | None = None) -> None:
        self.description = description
        if description:
            message = f"{description} is not a media type Hive accepts: send {ACCEPTED_FORMATS}."
        else:
            message = f"The file's format is not recognised: send {ACCEPTED_FORMATS}."
        super().__init__(message)


class CorruptMedia(MediaError):
    code = "corrupt_media"

    def __init__(self, mime: str, reason: str) -> None:
        self.mime = mime
        self.reason = reason
        super().__init__(
            f"The file looks like {mime} but is damaged or incomplete: {reason}. Send the complete file again."
        )


class _Malformed(Exception):
    """Raised by the parsers below; sniff() turns it into CorruptMedia."""


def sniff(fileobj: BinaryIO) -> MediaInfo:
    """The media kind, MIME type and extension of `fileobj`, from its bytes.

    Raises EmptyMedia, UnsupportedMedia or CorruptMedia. Reads the head, the
    tail of images and container headers only; the position is always left at 0
    so the caller can store or stream the file next.
    """
    try:
        fileobj.seek(0, os.SEEK_END)
        size = fileobj.tell()
        if size == 0:
            raise EmptyMedia()
        fileobj.seek(0)
        head = fileobj.read(HEAD_BYTES)
        mime, extension = _identify(head)
        info = MediaInfo(_KIND_BY_EXTENSION[extension], mime, extension)
        try:
            if info.kind in (VIDEO, AUDIO) and size < MIN_AV_BYTES:
                raise _Malformed(f"{size} bytes are too few to hold any audio or video")
            refine = _REFINERS.get(extension)
            if refine is not None:
                info = refine(fileobj, size, head, info)
            _check_image(fileobj, size, head, info)
        except _Malformed as exc:
            raise CorruptMedia(info.mime, str(exc)) from None
        return info
    finally:
        fileobj.seek(0)


def _identify(head: bytes) -> tuple[str, str]:
    """(mime, extension) of an accepted format, or UnsupportedMedia."""
    guess = filetype.guess(head)
    found = (guess.mime, guess.extension) if guess else _guess_extra(head)
    if found is None:
        raise UnsupportedMedia(_describe_unknown(head))
    if found[1] not in _KIND_BY_EXTENSION:
        raise UnsupportedMedia(found[0])
    return found


def _guess_extra(head: bytes) -> tuple[str, str] | None:
    """Accepted formats filetype does not recognise."""
    if head[:4] == b"FORM" and head[8:12] == b"AIFC":
        return "audio/x-aiff", "aiff"
    # An MPEG layer III frame header without an ID3 tag in front; filetype
    # only knows three of its variants.
    if len(head) > 1 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0 and (head[1] & 0x06) == 0x02:
        if (head[1] & 0x18) != 0x08:  # version bits 01 are reserved
            return "audio/mpeg", "mp3"
    # A raw H.264 stream starts with a start code and, from real encoders,
    # an access unit delimiter, SEI or sequence parameter set.
    for start_code in (b"\x00\x00\x00\x01", b"\x00\x00\x01"):
        if head.startswith(start_code) and len(head) > len(start_code):
            nal = head[len(start_code)]
            if (nal & 0x80) == 0 and (nal & 0x1F) in (6, 7, 9):
                return "video/h264", "h264"
    return None


def _describe_unknown(head: bytes) -> str | None:
    """A name for an unrecognised format, for the error message."""
    start = head[:1024].lstrip().lower()
    if not _looks_like_text(head):
        return None
    if start.startswith(b"<!doctype html") or start.startswith(b"<html"):
        return "text/html"
    if b"<svg" in start:
        return "image/svg+xml"
    return "text/plain"


def _looks_like_text(head: bytes) -> bool:
    try:
        # final=False: the head may end in the middle of a character.
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\t\n\r\f" for ch in text)


# --- ISO base media: MP4, MOV, 3GP, M4A --------------------------------------


def _boxes(f: BinaryIO, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, end) of each box in [start, end), reading headers only."""
    pos = start
    for _ in range(MAX_ELEMENTS):
        if pos + 8 > end:
            return
        f.seek(pos)
        header = f.read(16)
        size, box_type, payload = int.from_bytes(header[:4], "big"), header[4:8], pos + 8
        if size == 1:  # a 64-bit size follows the type
            size, payload = int.from_bytes(header[8:16], "big"), pos + 16
        elif size == 0:  # the box runs to the end of its parent
            size = end - pos
        if size < payload - pos:
            raise _Malformed("a box in it has an impossible size")
        yield box_type, payload, min(pos + size, end)
        pos += size


def _first_box(f: BinaryIO, start: int, end: int, box_type: bytes) -> tuple[int, int] | None:
    for found, payload, box_end in _boxes(f, start, end):
        if found == box_type:
            return payload, box_end
    return None


def _mp4_handler_types(f: BinaryIO, size: int) -> set[bytes]:
    """The handler of each track (b"vide", b"soun", ...), from moov/trak/mdia/hdlr.

    Encoders often write moov after the media data, so the top level is walked
    box by box instead of reading a fixed head.
    """
    moov = _first_box(f, 0, size, b"moov")
    if moov is None:
        raise _Malformed("it has no movie header (moov box), so it was probably cut short")
    handlers = set()
    for box_type, start, end in _boxes(f, *moov):
        if box_type != b"trak":
            continue
        mdia = _first_box(f, start, end, b"mdia")
        hdlr = _first_box(f, *mdia, b"hdlr") if mdia else None
        if hdlr and hdlr[1] - hdlr[0] >= 12:
            # version/flags, then pre_defined (QuickTime: component type), then the handler type.
            f.seek(hdlr[0] + 8)
            handlers.add(f.read(4))
    return handlers


def _refine_isobmff(f: BinaryIO, size: int, head: bytes, info: MediaInfo) -> MediaInfo:
    mime, extension = info.mime, info.extension
    if head[8:11] == b"3gp":  # filetype reports 3GP as mp4
        mime, extension = "video/3gpp", "3gp"
    handlers = _mp4_handler_types(f, size)
    if b"vide" in handlers:
        if mime.startswith("audio/"):
            mime, extension = "video/mp4", "mp4"
        return MediaInfo(VIDEO, mime, extension)
    if b"soun" in handlers:
        return MediaInfo(AUDIO, "audio/3gpp" if extension == "3gp" else "audio/mp4", extension)
    raise UnsupportedMedia(f"{mime} without a video or audio track")


# --- ASF: WMV or WMA ------------------------------------------------------------

_ASF_HEADER = uuid.UUID("75B22630-668E-11CF-A6D9-00AA0062CE6C").bytes_le
_ASF_VIDEO_MEDIA = uuid.UUID("BC19EFC0-5B4D-11CF-A8FD-00805F5C442B").bytes_le
_ASF_AUDIO_MEDIA = uuid.UUID("F8699E40-5B4D-11CF-A8FD-00805F5C442B").bytes_le


def _refine_asf(f: BinaryIO, size: int, head: bytes, info: MediaInfo) -> MediaInfo:
    header_size = int.from_bytes(head[16:24], "little")
    if head[:16] != _ASF_HEADER or not 30 <= header_size <= size:
        raise _Malformed("its ASF header is missing or cut short")
    f.seek(0)
    header = f.read(min(header_size, SCAN_LIMIT))
    # Each Stream Properties Object names its stream type by GUID. A 16-byte
    # GUID does not occur by chance, so searching the header object is as
    # reliable as walking its objects, and also finds the stream properties
    # that some files embed in the Header Extension Object.
    if _ASF_VIDEO_MEDIA in header:
        return MediaInfo(VIDEO, "video/x-ms-wmv", "wmv")
    if _ASF_AUDIO_MEDIA in header:
        return MediaInfo(AUDIO, "audio/x-ms-wma", "wma")
    raise UnsupportedMedia("an ASF file without a video or audio stream")


# --- Ogg ----------------------------------------------------------------------

_OGG_VIDEO_CODECS = (b"\x80theora", b"OVP80", b"BBCD\x00", b"\x80daala")
_OGG_AUDIO_CODECS = {b"OpusHead": "opus", b"\x01vorbis": "ogg", b"\x7fFLAC": "ogg", b"Speex   ": "ogg"}


def _ogg_first_packets(buf: bytes) -> list[bytes]:
    """The identification packet of each logical stream.

    Ogg puts every stream's beginning-of-stream page, holding just that
    packet, before any data page, so the first pages are all we need.
    """
    packets, pos = [], 0
    while buf[pos : pos + 4] == b"OggS" and pos + 27 <= len(buf):
        flags, segments = buf[pos + 5], buf[pos + 26]
        if not flags & 0x02:  # not a beginning-of-stream page
            break
        data = pos + 27 + segments
        length = sum(buf[pos + 27 : data])
        packets.append(buf[data : data + length])
        pos = data + length
    if not packets:
        raise _Malformed("its first Ogg page cannot be read")
    return packets


def _refine_ogg(f: BinaryIO, size: int, head: bytes, info: MediaInfo) -> MediaInfo:
    f.seek(0)
    packets = _ogg_first_packets(f.read(64 * 1024))
    if any(packet.startswith(_OGG_VIDEO_CODECS) for packet in packets):
        return MediaInfo(VIDEO, "application/ogg", "ogx")
    for packet in packets:
        for magic, extension in _OGG_AUDIO_CODECS.items():
            if packet.startswith(magic):
                return MediaInfo(AUDIO, "audio/ogg", extension)
    raise UnsupportedMedia("an Ogg file in a codec Hive does not take")


# --- Matroska / WebM ------------------------------------------------------------

_EBML, _SEGMENT, _TRACKS, _TRACK_ENTRY, _TRACK_TYPE, _CLUSTER = (
    0x1A45DFA3,
    0x18538067,
    0x1654AE6B,
    0xAE,
    0x83,
    0x1F43B675,
)
_VIDEO_TRACK, _AUDIO_TRACK = 1, 2
_UNKNOWN_SIZE = -1


def _read_vint(f: BinaryIO, *, keep_marker: bool) -> int:
    """An EBML variable-length integer: IDs keep their length marker, sizes do not."""
    first = f.read(1)
    if not first or first[0] == 0:
        raise _Malformed("its Matroska structure cannot be read")
    length = 9 - first[0].bit_length()
    rest = f.read(length - 1)
    if len(rest) != length - 1:
        raise _Malformed("its Matroska structure is cut short")
    value = int.from_bytes(first + rest, "big")
    if keep_marker:
        return value
    value &= (1 << (7 * length)) - 1
    return _UNKNOWN_SIZE if value == (1 << (7 * length)) - 1 else value


def _ebml_elements(f: BinaryIO, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(id, data start, data end) of each element in [start, end), reading headers only."""
    pos = start
    for _ in range(MAX_ELEMENTS):
        if pos >= end:
            return
        f.seek(pos)
        element_id = _read_vint(f, keep_marker=True)
        size = _read_vint(f, keep_marker=False)
        data = f.tell()
        data_end = end if size == _UNKNOWN_SIZE else min(data + size, end)
        yield element_id, data, data_end
        pos = data_end


def _matroska_track_types(f: BinaryIO, size: int) -> set[int]:
    """TrackType of each TrackEntry in Segment/Tracks; empty if there is no Tracks before the first Cluster."""
    elements = _ebml_elements(f, 0, size)
    first = next(elements, None)
    if first is None or first[0] != _EBML:
        raise _Malformed("its EBML header cannot be read")
    segment = next((e for e in elements if e[0] == _SEGMENT), None)
    if segment is None:
        raise _Malformed("it has no Matroska segment")
    for element_id, start, end in _ebml_elements(f, segment[1], segment[2]):
        if element_id == _CLUSTER:
            break
        if element_id == _TRACKS:
            return {_track_type(f, s, e) for i, s, e in _ebml_elements(f, start, end) if i == _TRACK_ENTRY}
    return set()


def _track_type(f: BinaryIO, start: int, end: int) -> int:
    for element_id, data, data_end in _ebml_elements(f, start, end):
        if element_id == _TRACK_TYPE:
            f.seek(data)
            return int.from_bytes(f.read(min(data_end - data, 8)), "big")
    return 0


def _refine_matroska(f: BinaryIO, size: int, head: bytes, info: MediaInfo) -> MediaInfo:
    types = _matroska_track_types(f, size)
    # No track list before the media data is legal but rare: keep the
    # container's usual kind rather than refuse the file.
    if _VIDEO_TRACK in types or not types:
        return info
    if _AUDIO_TRACK in types:
        mime = "audio/webm" if info.extension == "webm" else "audio/x-matroska"
        return MediaInfo(AUDIO, mime, info.extension)
    raise UnsupportedMedia(f"{info.mime} without a video or audio track")


_REFINERS: dict[str, Callable[[BinaryIO, int, bytes, MediaInfo], MediaInfo]] = {
    "mp4": _refine_isobmff,
    "m4v": _refine_isobmff,
    "m4a": _refine_isobmff,
    "mov": _refine_isobmff,
    "3gp": _refine_isobmff,
    "wmv": _refine_asf,
    "ogg": _refine_ogg,
    "mkv": _refine_matroska,
    "webm": _refine_matroska,
}


# --- Images: cut-short files -------------------------------------------------------
# Each check answers why the image is broken, or None. They read the head and
# the last TAIL_BYTES only: an upload cut short is by far the common breakage,
# and decoding a large image in full to find it would cost far more.


def _jpeg_problem(head: bytes, tail: bytes, size: int) -> str | None:
    # Byte stuffing keeps FF D9 out of the compressed data, so finding it near
    # the end is as good as finding it at the very end, and tolerates the
    # padding some cameras add after it.
    if b"\xff\xd9" not in tail:
        return "it does not end with the JPEG end-of-image marker"
    return None


def _png_problem(head: bytes, tail: bytes, size: int) -> str | None:
    if head[12:16] != b"IHDR":
        return "its PNG header chunk is missing"
    if b"IEND" not in tail:
        return "it does not end with the PNG end chunk"
    return None


def _gif_problem(head: bytes, tail: bytes, size: int) -> str | None:
    if size < 14 or not tail.rstrip(b"\x00").endswith(b";"):
        return "it does not end with the GIF trailer"
    return None


def _webp_problem(head: bytes, tail: bytes, size: int) -> str | None:
    if size < int.from_bytes(head[4:8], "little") + 8:
        return "it is shorter than its RIFF header says"
    return None


def _bmp_problem(head: bytes, tail: bytes, size: int) -> str | None:
    declared, pixels_at = int.from_bytes(head[2:6], "little"), int.from_bytes(head[10:14], "little")
    if size < pixels_at or size < declared:
        return "it is shorter than its bitmap header says"
    return None


_IMAGE_CHECKS: dict[str, Callable[[bytes, bytes, int], str | None]] = {
    "jpg": _jpeg_problem,
    "png": _png_problem,
    "apng": _png_problem,
    "gif": _gif_problem,
    "webp": _webp_problem,
    "bmp": _bmp_problem,
}


def _check_image(f: BinaryIO, size: int, head: bytes, info: MediaInfo) -> None:
    check = _IMAGE_CHECKS.get(info.extension)
    if check is None:
        return
    f.seek(max(0, size - TAIL_BYTES))
    problem = check(head, f.read(TAIL_BYTES), size)
    if problem:
        raise _Malformed(problem)
