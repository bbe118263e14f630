"""What a media file is, read from its header only: container, duration, image format. Pure.

Parsers take an async ``read(offset, length)`` callback (ranged GETs in production, a bytes slice in
tests) and the object's size, and fetch only box or element headers: an MP4 whose ``moov`` sits after
a multi-gigabyte ``mdat`` costs a handful of small reads, never the file.
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

Reader = Callable[[int, int], Awaitable[bytes]]

MAX_BOX_READS = 64
MAX_MOOV_CHILDREN = 256


class MediaError(ValueError):
    """The media is not something TikTok accepts; ``code`` names the problem for the status event."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Container(StrEnum):
    mp4 = "mp4"
    mov = "mov"
    webm = "webm"

    @property
    def content_type(self) -> str:
        return {"mp4": "video/mp4", "mov": "video/quicktime", "webm": "video/webm"}[self.value]


class ImageFormat(StrEnum):
    jpeg = "jpeg"
    webp = "webp"


@dataclass(frozen=True)
class VideoInfo:
    container: Container
    duration_s: float


# ------------------------------------------------------------------------------------------ MP4 / MOV


async def _box_header(read: Reader, offset: int, limit: int) -> tuple[str, int, int]:
    """(type, total size, header length) of the box at ``offset``; size 0 means "to ``limit``"."""
    head = await read(offset, 16 if limit - offset >= 16 else limit - offset)
    if len(head) < 8:
        raise MediaError("wrong_format", f"a box header at byte {offset} is cut off")
    size, kind_raw = struct.unpack(">I4s", head[:8])
    kind = kind_raw.decode("latin-1")
    header = 8
    if size == 1:
        if len(head) < 16:
            raise MediaError("wrong_format", f"a 64-bit box size at byte {offset} is cut off")
        (size,) = struct.unpack(">Q", head[8:16])
        header = 16
    elif size == 0:
        size = limit - offset
    if size < header or offset + size > limit:
        raise MediaError("wrong_format", f"box {kind!r} at byte {offset} has an impossible size {size}")
    return kind, size, header


def _mvhd_duration(body: bytes) -> float:
    if len(body) < 4:
        raise MediaError("wrong_format", "the mvhd box is too short")
    version = body[0]
    if version == 1:
        if len(body) < 4 + 28:
            raise MediaError("wrong_format", "the mvhd box is too short")
        timescale, duration = struct.unpack(">IQ", body[4 + 16 : 4 + 28])
    else:
        if len(body) < 4 + 16:
            raise MediaError("wrong_format", "the mvhd box is too short")
        timescale, duration = struct.unpack(">II", body[4 + 8 : 4 + 16])
    if timescale == 0:
        raise MediaError("wrong_format", "the mvhd timescale is zero")
    return float(duration) / float(timescale)


async def probe_isobmff(read: Reader, size: int) -> VideoInfo:
    """Walk top-level boxes to ``ftyp`` and ``moov``, then ``moov``'s children to ``mvhd``."""
    offset = 0
    container: Container | None = None
    reads = 0
    while offset < size:
        reads += 1
        if reads > MAX_BOX_READS:
            raise MediaError("wrong_format", "too many top-level boxes before moov")
        kind, box_size, header = await _box_header(read, offset, size)
        if reads == 1:
            if kind != "ftyp":
                raise MediaError("wrong_format", "an MP4/MOV file must start with an ftyp box")
            brand = (await read(offset + header, 4))[:4]
            container = Container.mov if brand == b"qt  " else Container.mp4
        if kind == "moov":
            return VideoInfo(
                container or Container.mp4, await _moov_duration(read, offset + header, offset + box_size)
            )
        offset += box_size
    raise MediaError("wrong_format", "the file has no moov box")


async def _moov_duration(read: Reader, start: int, end: int) -> float:
    offset = start
    for _ in range(MAX_MOOV_CHILDREN):
        if offset >= end:
            break
        kind, box_size, header = await _box_header(read, offset, end)
        if kind == "mvhd":
            return _mvhd_duration(await read(offset + header, min(box_size - header, 32)))
        offset += box_size
    raise MediaError("wrong_format", "the moov box has no mvhd")


# ------------------------------------------------------------------------------------------ WebM

_EBML = b"\x1a\x45\xdf\xa3"
ID_SEGMENT = 0x18538067
ID_INFO = 0x1549A966
ID_TIMECODE_SCALE = 0x2AD7B1
ID_DURATION = 0x4489
ID_DOCTYPE = 0x4282
UNKNOWN_SIZE = -1
WEBM_HEADER_BYTES = 64 * 1024


def _vint(buf: bytes, pos: int, *, keep_marker: bool) -> tuple[int, int]:
    """An EBML variable-length integer at ``pos``: (value, length). Sizes of all ones are unknown."""
    if pos >= len(buf):
        raise MediaError("wrong_format", "the WebM header is cut off")
    first = buf[pos]
    length = 1
    mask = 0x80
    while length <= 8 and not first & mask:
        mask >>= 1
        length += 1
    if length > 8 or pos + length > len(buf):
        raise MediaError("wrong_format", "a WebM element header is malformed or cut off")
    value = first if keep_marker else first & (mask - 1)
    all_ones = (first & (mask - 1)) == mask - 1
    for b in buf[pos + 1 : pos + length]:
        value = (value << 8) | b
        all_ones = all_ones and b == 0xFF
    if not keep_marker and all_ones:
        return UNKNOWN_SIZE, length
    return value, length


def _elements(buf: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """(id, data start, data size) of the elements in ``buf[start:end]`` that fit in the buffer."""
    out = []
    pos = start
    while pos < end:
        eid, id_len = _vint(buf, pos, keep_marker=True)
        size, size_len = _vint(buf, pos + id_len, keep_marker=False)
        data = pos + id_len + size_len
        out.append((eid, data, size))
        if size == UNKNOWN_SIZE:
            break
        pos = data + size
    return out


async def probe_webm(read: Reader, size: int) -> VideoInfo:
    """Find Segment → Info → Duration times TimecodeScale in the first 64 KiB (where muxers put Info)."""
    buf = await read(0, min(size, WEBM_HEADER_BYTES))
    if not buf.startswith(_EBML):
        raise MediaError("wrong_format", "not an EBML file")
    top = _elements(buf, 0, len(buf))
    header = next((e for e in top if e[0] == 0x1A45DFA3), None)
    if header is not None:
        doctype = next(
            (e for e in _elements(buf, header[1], header[1] + header[2]) if e[0] == ID_DOCTYPE), None
        )
        if doctype is not None and buf[doctype[1] : doctype[1] + doctype[2]] not in (b"webm", b"matroska"):
            raise MediaError("wrong_format", "the EBML document is not WebM")
    segment = next((e for e in top if e[0] == ID_SEGMENT), None)
    if segment is None:
        raise MediaError("wrong_format", "no Segment in the first 64 KiB of the WebM file")
    seg_end = len(buf) if segment[2] == UNKNOWN_SIZE else min(len(buf), segment[1] + segment[2])
    scale = 1_000_000
    for eid, data, esize in _safe_elements(buf, segment[1], seg_end):
        if eid != ID_INFO:
            continue
        duration: float | None = None
        for cid, cdata, csize in _safe_elements(buf, data, min(seg_end, data + esize)):
            raw = buf[cdata : cdata + csize]
            if cid == ID_TIMECODE_SCALE:
                scale = int.from_bytes(raw, "big")
            elif cid == ID_DURATION:
                duration = struct.unpack(">f" if csize == 4 else ">d", raw)[0]
        if duration is None:
            raise MediaError("unknown_duration", "the WebM Info has no Duration (a live stream?)")
        return VideoInfo(Container.webm, duration * scale / 1e9)
    raise MediaError("wrong_format", "no Info element in the first 64 KiB of the WebM file")


def _safe_elements(buf: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """Like :func:`_elements`, stopping quietly at an element that runs past the buffer."""
    out = []
    try:
        for e in _elements(buf, start, end):
            out.append(e)
            if e[2] == UNKNOWN_SIZE or e[1] + e[2] > end:
                break
    except MediaError:
        pass
    return out


# ------------------------------------------------------------------------------------------ dispatch


async def probe_video(read: Reader, size: int) -> VideoInfo:
    """Container and duration of a video from its header; :class:`MediaError` if it is neither."""
    if size < 16:
        raise MediaError("wrong_format", "the file is too small to be a video")
    head = await read(0, 12)
    if head[4:8] == b"ftyp":
        return await probe_isobmff(read, size)
    if head.startswith(_EBML):
        return await probe_webm(read, size)
    raise MediaError("wrong_format", "not an MP4, MOV or WebM file")


def image_format(head: bytes) -> ImageFormat:
    """JPEG or WebP from the first 12 bytes; TikTok takes no other photo format (no PNG)."""
    if head[:3] == b"\xff\xd8\xff":
        return ImageFormat.jpeg
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ImageFormat.webp
    raise MediaError("wrong_format", "a photo must be JPEG or WebP")
