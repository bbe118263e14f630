"""Pure rules of publish_service: header probing, rate windows, validation, the state machine."""

from __future__ import annotations

import itertools
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.events import PostRequestedData, PostState
from common.tiktok.client import CreatorInfo
from publish_service.domain import backoff, rate_window, states, validation
from publish_service.domain.media import Container, MediaError, VideoInfo, image_format, probe_video
from tests.publish.harness import make_image, make_video


class Recorder:
    """A ``read(offset, length)`` over bytes, counting what was asked for."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.bytes_read = 0
        self.calls = 0

    async def __call__(self, offset: int, length: int) -> bytes:
        self.calls += 1
        chunk = self.data[offset : offset + length]
        self.bytes_read += len(chunk)
        return chunk


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def mvhd(timescale: int, duration: int, version: int = 0) -> bytes:
    if version == 1:
        body = bytes([1, 0, 0, 0]) + struct.pack(">QQIQ", 0, 0, timescale, duration) + bytes(80)
    else:
        body = bytes(4) + struct.pack(">IIII", 0, 0, timescale, duration) + bytes(80)
    return box(b"mvhd", body)


# ---------------------------------------------------------------------------------------- media


async def test_probe_reads_an_ffmpeg_mp4(tmp_path: Path) -> None:
    data = make_video(tmp_path / "v.mp4", seconds=3).read_bytes()
    reader = Recorder(data)
    info = await probe_video(reader, len(data))
    assert info.container is Container.mp4
    assert info.duration_s == pytest.approx(3.0, abs=0.1)
    assert reader.bytes_read < 1024, "only box headers and mvhd are read"


async def test_probe_finds_moov_after_a_four_gigabyte_mdat_with_a_few_small_reads() -> None:
    ftyp = box(b"ftyp", b"isom" + bytes(4) + b"isommp41")
    mdat_size = 4 * 1024**3 - 4096
    mdat_header = struct.pack(">I4sQ", 1, b"mdat", mdat_size)  # 64-bit largesize
    moov = box(b"moov", mvhd(1000, 59_500, version=1))
    total = len(ftyp) + mdat_size + len(moov)
    moov_at = len(ftyp) + mdat_size
    asked: list[tuple[int, int]] = []

    async def read(offset: int, length: int) -> bytes:
        asked.append((offset, length))
        out = bytearray()
        for i in range(offset, min(total, offset + length)):
            if i < len(ftyp):
                out.append(ftyp[i])
            elif i < len(ftyp) + len(mdat_header):
                out.append(mdat_header[i - len(ftyp)])
            elif i >= moov_at:
                out.append(moov[i - moov_at])
            else:
                out.append(0)
        return bytes(out)

    info = await probe_video(read, total)
    assert info == VideoInfo(Container.mp4, 59.5)
    assert sum(length for _, length in asked) < 256
    assert len(asked) <= 8


async def test_probe_knows_mov_by_its_brand() -> None:
    data = box(b"ftyp", b"qt  " + bytes(4) + b"qt  ") + box(b"moov", mvhd(600, 6000)) + bytes(64)
    info = await probe_video(Recorder(data), len(data))
    assert info == VideoInfo(Container.mov, 10.0)


async def test_probe_reads_webm_duration(tmp_path: Path) -> None:
    path = tmp_path / "v.webm"
    assert shutil.which("ffmpeg"), "ffmpeg is missing: make install puts it on the machine"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30", "-t", "2",
         "-c:v", "libvpx", "-b:v", "200k", str(path)],
        check=True,
    )  # fmt: skip
    data = path.read_bytes()
    info = await probe_video(Recorder(data), len(data))
    assert info.container is Container.webm
    assert info.duration_s == pytest.approx(2.0, abs=0.1)


@pytest.mark.parametrize(
    "data",
    [
        b"\x00" * 64,
        b"not a video, just some text that is long enough",
        box(b"ftyp", b"isom" + bytes(8)) + box(b"mdat", bytes(32)),  # no moov
        box(b"ftyp", b"isom" + bytes(8)) + struct.pack(">I4s", 10**9, b"moov"),  # impossible size
        box(b"ftyp", b"isom" + bytes(8)) + box(b"moov", box(b"trak", bytes(16))),  # no mvhd
    ],
)
async def test_probe_refuses_what_is_not_a_video(data: bytes) -> None:
    with pytest.raises(MediaError) as caught:
        await probe_video(Recorder(data), len(data))
    assert caught.value.code == "wrong_format"


def test_image_formats(tmp_path: Path) -> None:
    assert image_format(make_image(tmp_path / "p.jpg").read_bytes()[:12]).value == "jpeg"
    assert image_format(b"RIFF\x00\x00\x00\x00WEBPVP8 ").value == "webp"
    with pytest.raises(MediaError):
        image_format(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0d")


# ---------------------------------------------------------------------------------------- rate windows


def test_rate_window_allows_up_to_the_limit_then_says_how_long_to_wait() -> None:
    calls = [100.0, 101.0, 102.0, 103.0, 104.0, 105.0]
    assert rate_window.decide(calls[:5], 106.0, 6, 60.0).allowed
    denied = rate_window.decide(calls, 106.0, 6, 60.0)
    assert not denied.allowed and denied.wait_s == pytest.approx(54.0)
    assert rate_window.decide(calls, 160.5, 6, 60.0).allowed


@given(
    st.lists(st.floats(min_value=0, max_value=600, allow_nan=False), max_size=60),
    st.integers(min_value=1, max_value=30),
)
def test_following_the_decisions_never_exceeds_the_limit(requests: list[float], limit: int) -> None:
    window = 60.0
    accepted: list[float] = []
    for at in sorted(requests):
        now = at
        while True:
            decision = rate_window.decide(accepted, now, limit, window)
            if decision.allowed:
                accepted.append(now)
                break
            assert decision.wait_s > 0
            now += decision.wait_s
    for t in accepted:
        assert sum(1 for u in accepted if t - window < u <= t) <= limit


# ---------------------------------------------------------------------------------------- validation


CREATOR = CreatorInfo(
    username="alice",
    nickname="Alice",
    avatar_url="",
    privacy_level_options=("PUBLIC_TO_EVERYONE", "SELF_ONLY"),
    comment_disabled=True,
    duet_disabled=False,
    stitch_disabled=True,
    max_video_post_duration_sec=180,
)  # fmt: skip


def post(**overrides: object) -> PostRequestedData:
    fields: dict[str, object] = {
        "post_id": "p",
        "account_id": "a",
        "kind": "video",
        "mode": "direct",
        "video": {"uri": "s3://media/v.mp4"},
        "privacy_level": "SELF_ONLY",
    }  # fmt: skip
    fields.update(overrides)
    return PostRequestedData.model_validate(fields)


def test_privacy_level_must_be_among_the_creators_options() -> None:
    validation.check_against_creator(post(), CREATOR)
    with pytest.raises(validation.Rejected) as caught:
        validation.check_against_creator(post(privacy_level="MUTUAL_FOLLOW_FRIENDS"), CREATOR)
    assert caught.value.code == "privacy_level_option_mismatch"


def test_duration_is_checked_against_the_creator_for_direct_posts_and_ten_minutes_for_drafts() -> None:
    validation.check_video(post(), VideoInfo(Container.mp4, 180.2), CREATOR)
    with pytest.raises(validation.Rejected) as caught:
        validation.check_video(post(), VideoInfo(Container.mp4, 181.0), CREATOR)
    assert caught.value.code == "duration_too_long"
    draft = post(mode="draft", privacy_level=None)
    validation.check_video(draft, VideoInfo(Container.mp4, 500.0), CREATOR)
    with pytest.raises(validation.Rejected):
        validation.check_video(draft, VideoInfo(Container.mp4, 601.0), CREATOR)


def test_toggles_the_creator_turned_off_are_forced_off_and_all_are_sent() -> None:
    info = validation.video_post_info(post(caption="hi"), CREATOR)
    assert info == {
        "privacy_level": "SELF_ONLY", "disable_comment": True, "disable_duet": False, "disable_stitch": True,
        "brand_content_toggle": False, "brand_organic_toggle": False, "is_aigc": False, "title": "hi",
    }  # fmt: skip


def test_photo_post_info_has_no_duet_or_stitch() -> None:
    photo = post(kind="photo", video=None, transfer="pull_from_url", photos=[{"uri": "s3://media/a.jpg"}],
                 cover_index=0, title="t", description="d")  # fmt: skip
    info = validation.photo_post_info(photo, CREATOR)
    assert "disable_duet" not in info and "disable_stitch" not in info
    assert info["disable_comment"] is True and info["title"] == "t"
    assert validation.photo_post_mode(photo) == "DIRECT_POST"


def test_sizes_and_buckets() -> None:
    validation.check_video_size(4 * 1024**3)
    with pytest.raises(validation.Rejected, match="4 GiB"):
        validation.check_video_size(4 * 1024**3 + 1)
    with pytest.raises(validation.Rejected) as caught:
        validation.check_bucket("other", ["media"])
    assert caught.value.code == "bucket_not_allowed"
    with pytest.raises(validation.Rejected):
        validation.check_photo_size(20 * 1024 * 1024 + 1)


def test_caption_length_counts_utf16_units() -> None:
    emoji = "\U0001f600"  # two UTF-16 units
    validation.check_captions(post(caption=emoji * 1100))
    with pytest.raises(ValueError, match="UTF-16"):
        post(caption=emoji * 1100 + "x")


# ---------------------------------------------------------------------------------------- states, backoff


def test_state_machine_paths() -> None:
    s = PostState
    happy = [s.received, s.validating, s.uploading, s.processing, s.published]
    for a, b in itertools.pairwise(happy):
        states.check_transition(a, b)
    states.check_transition(s.received, s.scheduled)
    states.check_transition(s.validating, s.processing)  # PULL_FROM_URL
    states.check_transition(s.processing, s.inbox_delivered)
    for terminal in (s.failed, s.rejected, s.cancelled):
        for target in s:
            assert not states.is_legal(terminal, target)
    with pytest.raises(states.IllegalTransition):
        states.check_transition(s.published, s.uploading)


def test_backoff_grows_to_its_cap() -> None:
    policy = backoff.Backoff(initial=1, factor=2, maximum=10, jitter=0)
    assert [policy.delay(n) for n in range(1, 6)] == [1, 2, 4, 8, 10]
    assert backoff.status_poll_delay(0) < backoff.status_poll_delay(50)
