"""Media kind is decided from the bytes: real sample files, plus a few built inline."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from moderation.hive.rules import AUDIO, GIF, IMAGE, VIDEO
from moderation.services.media import CorruptMedia, EmptyMedia, MediaError, UnsupportedMedia, sniff


def samples_dir() -> Path:
    # tests/ -> repo -> the folder beside it that holds shared/
    return Path(__file__).resolve().parent.parent.parent / "shared" / "media-samples"


def sample(name: str) -> bytes:
    return (samples_dir() / name).read_bytes()


KIND_OF_SAMPLE = {
    "sample.png": IMAGE,
    "sample.jpg": IMAGE,
    "sample.bmp": IMAGE,
    "sample-animated.gif": GIF,
    "sample-animated.webp": IMAGE,
    "sample.mp4": VIDEO,
    "sample.mov": VIDEO,
    "sample.mkv": VIDEO,
    "sample.webm": VIDEO,
    "sample.avi": VIDEO,
    "sample.flv": VIDEO,
    "sample.wmv": VIDEO,
    "sample.3gp": VIDEO,
    "sample.wav": AUDIO,
    "sample.mp3": AUDIO,
    "sample.flac": AUDIO,
    "sample.ogg": AUDIO,
    "sample.opus": AUDIO,
    "sample.aiff": AUDIO,
    "sample.wma": AUDIO,
    "png-named-as.mp4": IMAGE,
}

ERROR_OF_SAMPLE = {
    "empty.png": EmptyMedia,
    "truncated.jpg": CorruptMedia,
    "not-accepted.svg": UnsupportedMedia,
    "document.pdf": UnsupportedMedia,
    "archive-named-as.png": UnsupportedMedia,
    "text-named-as.jpg": UnsupportedMedia,
}


def test_every_sample_file_is_covered_by_these_tests():
    on_disk = {p.name for p in samples_dir().iterdir()} - {"README.md"}
    assert on_disk == set(KIND_OF_SAMPLE) | set(ERROR_OF_SAMPLE)


@pytest.mark.parametrize("name, kind", sorted(KIND_OF_SAMPLE.items()))
def test_it_finds_the_kind_of_each_accepted_sample(name, kind):
    with open(samples_dir() / name, "rb") as f:
        assert sniff(f).kind == kind


@pytest.mark.parametrize("name, error", sorted(ERROR_OF_SAMPLE.items()))
def test_it_refuses_each_sample_hive_does_not_take(name, error):
    with open(samples_dir() / name, "rb") as f, pytest.raises(error):
        sniff(f)


def test_it_names_wma_as_audio_and_wmv_as_video():
    wma, wmv = sniff(io.BytesIO(sample("sample.wma"))), sniff(io.BytesIO(sample("sample.wmv")))
    assert (wma.kind, wma.mime, wma.extension) == (AUDIO, "audio/x-ms-wma", "wma")
    assert (wmv.kind, wmv.mime, wmv.extension) == (VIDEO, "video/x-ms-wmv", "wmv")


def test_it_names_opus_in_ogg_by_its_codec():
    assert sniff(io.BytesIO(sample("sample.opus"))).extension == "opus"
    assert sniff(io.BytesIO(sample("sample.ogg"))).extension == "ogg"


def test_it_ignores_the_file_name_and_content_type_of_an_upload():
    upload = SimpleUploadedFile("clip.mp4", sample("sample.png"), content_type="video/mp4")
    info = sniff(upload)
    assert (info.kind, info.mime, info.extension) == (IMAGE, "image/png", "png")
    assert upload.tell() == 0


def test_it_leaves_the_position_at_zero_after_success_and_after_refusal():
    ok = io.BytesIO(sample("sample.mp4"))
    ok.seek(100)
    sniff(ok)
    assert ok.tell() == 0

    broken = io.BytesIO(sample("truncated.jpg"))
    with pytest.raises(CorruptMedia):
        sniff(broken)
    assert broken.tell() == 0


def test_its_messages_tell_the_partner_what_to_do():
    with pytest.raises(MediaError) as empty:
        sniff(io.BytesIO(b""))
    assert str(empty.value) == "The file is empty."

    with pytest.raises(UnsupportedMedia) as svg:
        sniff(io.BytesIO(sample("not-accepted.svg")))
    assert str(svg.value).startswith("image/svg+xml is not a media type Hive accepts: send an image (jpg")

    with pytest.raises(CorruptMedia) as cut:
        sniff(io.BytesIO(sample("truncated.jpg")))
    assert "image/jpeg" in str(cut.value) and "end-of-image" in str(cut.value)


def test_it_calls_an_html_page_html():
    # What a mirrored URL often returns instead of the media: a login or error page.
    with pytest.raises(UnsupportedMedia) as page:
        sniff(io.BytesIO(b"<!DOCTYPE html><html><body>Please sign in</body></html>"))
    assert page.value.description == "text/html"


# --- Images cut short ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["sample.png", "sample.jpg", "sample.bmp", "sample-animated.gif", "sample-animated.webp"]
)
def test_it_refuses_an_image_missing_its_last_bytes(name):
    data = sample(name)
    with pytest.raises(CorruptMedia):
        sniff(io.BytesIO(data[: len(data) - 20]))


def test_it_accepts_a_jpeg_with_padding_after_its_end_marker():
    padded = sample("sample.jpg") + b"\x00" * 200
    assert sniff(io.BytesIO(padded)).kind == IMAGE


# --- Containers that may hold audio only ---------------------------------------------------


def box(box_type: bytes, payload: bytes = b"") -> bytes:
    return (8 + len(payload)).to_bytes(4, "big") + box_type + payload


def mp4_with_handlers(*handlers: bytes, mdat_size: int = 1000) -> bytes:
    """A minimal MP4 with its moov after the media data, as many encoders write it."""
    traks = b"".join(
        box(b"trak", box(b"mdia", box(b"hdlr", b"\x00" * 8 + handler + b"\x00" * 12))) for handler in handlers
    )
    ftyp = box(b"ftyp", b"isom\x00\x00\x02\x00isomiso2mp41")
    return ftyp + box(b"mdat", b"\x00" * mdat_size) + box(b"moov", box(b"mvhd", b"\x00" * 100) + traks)


def test_it_sees_an_mp4_with_only_a_sound_track_as_audio():
    info = sniff(io.BytesIO(mp4_with_handlers(b"soun")))
    assert (info.kind, info.mime, info.extension) == (AUDIO, "audio/mp4", "mp4")


def test_it_sees_the_sample_mp4_as_audio_once_its_video_track_is_relabelled():
    data = re.sub(rb"(hdlr.{8})vide", rb"\1soun", sample("sample.mp4"), flags=re.DOTALL)
    assert sniff(io.BytesIO(data)).kind == AUDIO


def test_it_sees_an_mp4_with_a_video_track_as_video():
    assert sniff(io.BytesIO(mp4_with_handlers(b"soun", b"vide"))).kind == VIDEO


class CountingReader(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk


def test_it_finds_a_moov_after_megabytes_of_media_data_without_reading_them():
    f = CountingReader(mp4_with_handlers(b"soun", mdat_size=4 * 1024 * 1024))
    assert sniff(f).kind == AUDIO
    assert f.bytes_read < 64 * 1024


def test_it_refuses_an_mp4_cut_before_its_moov():
    data = sample("sample.mp4")
    assert data.index(b"moov") > len(data) // 2
    with pytest.raises(CorruptMedia, match="moov"):
        sniff(io.BytesIO(data[: len(data) // 2]))


def test_it_refuses_an_asf_file_whose_header_is_cut_short():
    with pytest.raises(CorruptMedia):
        sniff(io.BytesIO(sample("sample.wmv")[:300]))


def ebml(element_id: bytes, payload: bytes) -> bytes:
    # Short sizes in one byte (as filetype expects for DocType), longer ones in eight.
    if len(payload) < 127:
        return element_id + bytes([0x80 | len(payload)]) + payload
    return element_id + (0x01 << 56 | len(payload)).to_bytes(8, "big") + payload


def webm_with_track_types(*types: int) -> bytes:
    header = ebml(b"\x1a\x45\xdf\xa3", ebml(b"\x42\x82", b"webm"))
    tracks = b"".join(ebml(b"\xae", ebml(b"\x83", bytes([t]))) for t in types)
    cluster = ebml(b"\x1f\x43\xb6\x75", b"\x00" * 200)
    return header + ebml(b"\x18\x53\x80\x67", ebml(b"\x16\x54\xae\x6b", tracks) + cluster)


def test_it_sees_a_webm_with_only_an_audio_track_as_audio():
    info = sniff(io.BytesIO(webm_with_track_types(2)))
    assert (info.kind, info.mime) == (AUDIO, "audio/webm")


def test_it_sees_a_webm_with_a_video_track_as_video():
    assert sniff(io.BytesIO(webm_with_track_types(2, 1))).kind == VIDEO


def test_it_refuses_a_matroska_file_whose_structure_is_garbage():
    data = ebml(b"\x1a\x45\xdf\xa3", ebml(b"\x42\x82", b"matroska")) + b"\x00" * 300
    with pytest.raises(CorruptMedia):
        sniff(io.BytesIO(data))


def ogg_page(packet: bytes, *, first: bool) -> bytes:
    flags = b"\x02" if first else b"\x00"
    segments = [255] * (len(packet) // 255) + [len(packet) % 255]
    return b"OggS\x00" + flags + b"\x00" * 20 + bytes([len(segments)]) + bytes(segments) + packet


def test_it_sees_an_ogg_with_a_theora_stream_as_video():
    data = ogg_page(b"\x80theora" + b"\x00" * 34, first=True) + ogg_page(b"\x01vorbis" + b"\x00" * 30, first=True)
    info = sniff(io.BytesIO(data + ogg_page(b"\x00" * 300, first=False)))
    assert (info.kind, info.extension) == (VIDEO, "ogx")


def test_it_sees_a_raw_h264_stream_as_video():
    data = b"\x00\x00\x00\x01\x67\x42\x00\x1e" + b"\x00" * 300
    info = sniff(io.BytesIO(data))
    assert (info.kind, info.extension) == (VIDEO, "h264")


def test_it_refuses_audio_too_short_to_hold_a_single_frame():
    with pytest.raises(CorruptMedia):
        sniff(io.BytesIO(sample("sample.mp3")[:100]))
