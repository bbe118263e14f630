"""The FILE_UPLOAD chunk plan (spec §5.1) and Content-Range resync (spec §5.2). Pure functions."""

from __future__ import annotations

import re
from dataclasses import dataclass

MIB = 1024 * 1024
MIN_CHUNK = 5 * MIB
MAX_CHUNK = 64 * MIB
MAX_LAST_CHUNK = 128 * MIB
MAX_CHUNKS = 1000
MAX_VIDEO_SIZE = 4 * 1024 * MIB
DEFAULT_CHUNK = 10 * MIB


class ChunkPlanError(ValueError):
    pass


@dataclass(frozen=True)
class ChunkPlan:
    video_size: int
    chunk_size: int
    total_chunks: int

    def bounds(self, index: int) -> tuple[int, int]:
        """First and last (inclusive) byte of chunk ``index``; the last chunk takes the remainder."""
        if not 0 <= index < self.total_chunks:
            raise IndexError(index)
        first = index * self.chunk_size
        last = self.video_size - 1 if index == self.total_chunks - 1 else first + self.chunk_size - 1
        return first, last

    def index_at(self, offset: int) -> int:
        """The chunk that starts at byte ``offset`` (which must be a chunk boundary or the end)."""
        if offset == self.video_size:
            return self.total_chunks
        index, rem = divmod(offset, self.chunk_size)
        if rem or index >= self.total_chunks:
            raise ChunkPlanError(f"offset {offset} is not a chunk boundary of {self}")
        return index


def plan_chunks(video_size: int, preferred_chunk: int = DEFAULT_CHUNK) -> ChunkPlan:
    """A plan that satisfies every rule of §5.1 for ``video_size`` bytes."""
    if video_size <= 0:
        raise ChunkPlanError("the video is empty")
    if video_size > MAX_VIDEO_SIZE:
        raise ChunkPlanError(f"the video is {video_size} bytes; TikTok accepts at most 4 GiB")
    if not MIN_CHUNK <= preferred_chunk <= MAX_CHUNK:
        raise ChunkPlanError("the chunk size must be between 5 MiB and 64 MiB")
    if video_size <= MAX_CHUNK:
        # Under 5 MiB it must go whole; up to 64 MiB a whole upload is allowed and simplest.
        return ChunkPlan(video_size, video_size, 1)
    # The floor rule puts the remainder in the last chunk, which stays under two chunks (<= 128 MiB);
    # at 5 MiB or more a 4 GiB video needs at most 819 chunks, so the 1000 limit cannot bind.
    chunk = preferred_chunk
    if video_size // chunk < 2:
        # The spec's pitfall: a large chunk and a video between 64 and 128 MiB give one chunk, which
        # TikTok refuses for videos over 64 MiB. Halve the video instead (between 32 and 64 MiB).
        chunk = video_size // 2
    plan = ChunkPlan(video_size, chunk, video_size // chunk)
    check_plan(plan)
    return plan


def check_plan(plan: ChunkPlan) -> None:
    """Raise :class:`ChunkPlanError` when TikTok would refuse this plan at init."""
    size, chunk, total = plan.video_size, plan.chunk_size, plan.total_chunks
    if size < MIN_CHUNK:
        if chunk != size or total != 1:
            raise ChunkPlanError("a video under 5 MiB must be sent whole")
        return
    if not (MIN_CHUNK <= chunk <= MAX_CHUNK or (chunk == size and size <= MAX_CHUNK)):
        raise ChunkPlanError("the chunk size must be between 5 MiB and 64 MiB")
    if size > MAX_CHUNK and total < 2:
        raise ChunkPlanError("a video over 64 MiB must be sent in several chunks")
    if total != size // chunk:
        raise ChunkPlanError("total_chunk_count must be floor(video_size / chunk_size)")
    if not 1 <= total <= MAX_CHUNKS:
        raise ChunkPlanError("between 1 and 1000 chunks")
    if size - (total - 1) * chunk > MAX_LAST_CHUNK:
        raise ChunkPlanError("the last chunk would exceed 128 MiB")


_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")


def resync_offset(plan: ChunkPlan, content_range: str | None) -> int | None:
    """The next byte TikTok expects, from a PUT response's ``Content-Range: bytes 0-X/total``.

    TikTok does not say whether X is a byte count or the last index received (§5.2). Exactly one of
    the two readings lands on a chunk boundary (chunks are at least 5 MiB), so that one is taken.
    Returns None when the header is missing or fits neither reading.
    """
    if not content_range:
        return None
    match = _RANGE.match(content_range)
    if not match:
        return None
    end = int(match.group(2))
    for candidate in (end + 1, end):
        if candidate == plan.video_size or (
            0 < candidate < plan.video_size
            and candidate % plan.chunk_size == 0
            and candidate // plan.chunk_size < plan.total_chunks
        ):
            return candidate
    if end == 0:
        return 0
    return None
