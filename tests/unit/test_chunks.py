from hypothesis import given
from hypothesis import strategies as st

from common.tiktok.chunks import (
    MAX_VIDEO_SIZE,
    MIB,
    ChunkPlan,
    ChunkPlanError,
    check_plan,
    plan_chunks,
    resync_offset,
)


def test_guide_worked_example_is_five_chunks_with_large_last():
    plan = ChunkPlan(50_000_123, 10_000_000, 5)
    check_plan(plan)
    assert plan.bounds(0) == (0, 9_999_999)
    assert plan.bounds(4) == (40_000_000, 50_000_122)


def test_under_5mib_goes_whole():
    assert plan_chunks(4_194_304) == ChunkPlan(4_194_304, 4_194_304, 1)


def test_64mib_goes_whole_and_just_over_is_chunked():
    assert plan_chunks(64 * MIB).total_chunks == 1
    plan = plan_chunks(64 * MIB + 1)
    assert plan.total_chunks == 6 and plan.chunk_size == 10 * MIB


@given(
    size=st.integers(min_value=1, max_value=MAX_VIDEO_SIZE), chunk=st.integers(5, 64).map(lambda m: m * MIB)
)
def test_every_plan_satisfies_tiktoks_rules(size, chunk):
    plan = plan_chunks(size, chunk)
    check_plan(plan)
    covered = 0
    for index in range(plan.total_chunks):
        first, last = plan.bounds(index)
        assert first == covered
        covered = last + 1
    assert covered == size


def test_empty_and_oversized_videos_are_refused():
    for size in (0, MAX_VIDEO_SIZE + 1):
        try:
            plan_chunks(size)
        except ChunkPlanError:
            continue
        raise AssertionError(size)


@given(size=st.integers(min_value=64 * MIB + 1, max_value=MAX_VIDEO_SIZE), data=st.data())
def test_resync_reads_count_or_last_index(size, data):
    plan = plan_chunks(size)
    acked = data.draw(st.integers(0, plan.total_chunks))
    offset = size if acked == plan.total_chunks else acked * plan.chunk_size
    if offset == 0:
        assert resync_offset(plan, f"bytes 0-0/{size}") == 0
        return
    assert resync_offset(plan, f"bytes 0-{offset - 1}/{size}") == offset  # inclusive last index
    assert resync_offset(plan, f"bytes 0-{offset}/{size}") == offset  # byte count


def test_resync_refuses_garbage():
    plan = plan_chunks(100 * MIB)
    assert resync_offset(plan, None) is None
    assert resync_offset(plan, "nonsense") is None
    assert resync_offset(plan, f"bytes 0-{3 * MIB}/{100 * MIB}") is None


def test_large_preferred_chunk_never_leaves_a_big_video_in_one_chunk():
    # floor(70 MiB / 64 MiB) == 1, which TikTok refuses for a video over 64 MiB (spec §5.1 pitfall).
    plan = plan_chunks(70 * MIB, 64 * MIB)
    check_plan(plan)
    assert plan.total_chunks == 2 and plan.chunk_size == 35 * MIB
