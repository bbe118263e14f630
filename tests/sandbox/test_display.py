"""The Display API emulation: ``/v2/video/query/`` and the stats fields of ``/v2/user/info/``
(docs/insights.md), and the control routes that seed counts and make videos private or deleted."""

from __future__ import annotations

import aiohttp
import pytest

from common.tiktok import display
from common.tiktok.client import TikTokClient
from common.tiktok.errors import TikTokError
from tests.sandbox.conftest import LOG_ID
from tiktok_sandbox.config import SandboxConfig

QUERY = "/v2/video/query/"
FIELDS = "id,view_count,like_count,comment_count,share_count"
DAY = 86400


@pytest.fixture
def sandbox_config(tmp_path) -> SandboxConfig:
    return SandboxConfig(
        data_dir=str(tmp_path / "sandbox-data"),
        access_token_ttl_s=10**8,
        rate_limits={QUERY: 3, "/v2/user/info/": 600},
    )


async def _videos(world, creator: str, count: int, **seed) -> list[str]:
    added = await world.sb.control.request("POST", "/videos", {"username": creator, "count": count, **seed})
    return [v["video_id"] for v in added]


async def _query(world, ids, token=None, fields=FIELDS):
    return await world.api.post(f"{QUERY}?fields={fields}", token or world.t, {"filters": {"video_ids": ids}})


async def test_query_answers_the_requested_fields_of_the_users_public_videos(world):
    await world.sb.control.freeze_time()
    ids = await _videos(world, "alice", 2)
    await world.sb.control.advance_time(DAY)
    r = await _query(world, ids)
    assert r.status == 200 and r.code == "ok" and LOG_ID.match(r.body["error"]["log_id"])
    assert r.data["has_more"] is False and r.data["cursor"] == 0
    videos = r.data["videos"]
    assert [v["id"] for v in videos] == ids
    assert all(set(v) == set(FIELDS.split(",")) for v in videos)
    assert all(v["view_count"] > 0 and 0 < v["like_count"] < v["view_count"] for v in videos)
    only_title = await _query(world, ids[:1], fields="id,title,create_time")
    assert set(only_title.data["videos"][0]) == {"id", "title", "create_time"}


async def test_counts_grow_with_the_clock_and_level_off(world):
    await world.sb.control.freeze_time()
    (vid,) = await _videos(world, "alice", 1)
    seen = []
    for step in (3600, 6 * 3600, DAY, 3 * DAY, 30 * DAY, 60 * DAY):
        await world.sb.control.advance_time(step)
        seen.append((await _query(world, [vid])).data["videos"][0]["view_count"])
    assert seen == sorted(seen) and seen[0] < seen[2] < seen[3]
    assert seen[-1] - seen[-2] < (seen[1] - seen[0]) + 1, "a saturating curve: late days add little"


async def test_seeds_set_the_counts_and_growth_goes_on_from_there(world):
    await world.sb.control.freeze_time()
    (vid,) = await _videos(world, "alice", 1, view_count=1000, like_count=50, comment_count=3, share_count=2)
    first = (await _query(world, [vid])).data["videos"][0]
    assert (first["view_count"], first["like_count"], first["comment_count"], first["share_count"]) == (
        1000,
        50,
        3,
        2,
    )
    await world.sb.control.advance_time(DAY)
    assert (await _query(world, [vid])).data["videos"][0]["view_count"] > 1000
    await world.sb.control.request("PATCH", f"/videos/{vid}", {"growth": 0})
    frozen = (await _query(world, [vid])).data["videos"][0]["view_count"]
    await world.sb.control.advance_time(DAY)
    assert (await _query(world, [vid])).data["videos"][0]["view_count"] == frozen


async def test_private_deleted_foreign_and_unknown_videos_are_left_out(world):
    await world.sb.control.create_creator("bob")
    mine = await _videos(world, "alice", 3)
    (bobs,) = await _videos(world, "bob", 1)
    await world.sb.control.request("PATCH", f"/videos/{mine[0]}", {"visibility": "private"})
    await world.sb.control.request("PATCH", f"/videos/{mine[1]}", {"visibility": "deleted"})
    r = await _query(world, [*mine, bobs, "7000000000000000001"])
    assert r.code == "ok" and [v["id"] for v in r.data["videos"]] == [mine[2]]
    await world.sb.control.request("PATCH", f"/videos/{mine[0]}", {"visibility": "public"})
    assert len((await _query(world, mine)).data["videos"]) == 2
    with pytest.raises(Exception, match="409"):
        await world.sb.control.request("PATCH", f"/videos/{mine[1]}", {"visibility": "public"})


@pytest.mark.parametrize(
    ("ids", "fields", "message"),
    [
        ([], FIELDS, "video_ids is required"),
        (None, FIELDS, "video_ids is required"),
        (["1"] * 21, FIELDS, "Up to 20"),
        (["abc"], FIELDS, "strings of digits"),
        ([123], FIELDS, "strings of digits"),
        (["1"], "", "fields is required"),
        (["1"], "id,fps", "Unknown fields: fps"),
    ],
)
async def test_bad_queries_are_invalid_params(world, ids, fields, message):
    body = {"filters": {"video_ids": ids}} if ids is not None else {}
    r = await world.api.post(f"{QUERY}?fields={fields}", world.t, body)
    assert r.status == 400 and r.code == "invalid_params" and message in r.body["error"]["message"]


async def test_twenty_ids_are_allowed(world):
    ids = await _videos(world, "alice", 20)
    r = await _query(world, ids)
    assert r.code == "ok" and len(r.data["videos"]) == 20


async def test_without_video_list_the_query_is_scope_not_authorized(world):
    token = await world.sb.control.issue_token(
        world.app.client_key, "alice", ["user.info.basic", "video.publish"]
    )
    r = await _query(world, await _videos(world, "alice", 1), token=token.access_token)
    assert r.status == 401 and r.code == "scope_not_authorized"


async def test_the_query_has_its_own_rate_limit(world):
    (vid,) = await _videos(world, "alice", 1)
    codes = [(await _query(world, [vid])).code for _ in range(4)]
    assert codes == ["ok", "ok", "ok", "rate_limit_exceeded"]
    calls = [c for c in (await world.sb.control.call_counts())["calls"] if c["endpoint"] == QUERY]
    assert calls[0]["rate_limited"] == 1


async def test_account_stats_add_the_public_videos_to_the_seeded_counts(world):
    await world.sb.control.update_creator(
        "alice", follower_count=100, following_count=5, likes_count=7, video_count=2
    )
    await world.sb.control.freeze_time()
    ids = await _videos(world, "alice", 2, view_count=1000, like_count=40, growth=0)
    await world.sb.control.request("PATCH", f"/videos/{ids[1]}", {"visibility": "private"})
    r = await world.api.get(
        "/v2/user/info/", world.t, {"fields": "follower_count,following_count,likes_count,video_count"}
    )
    assert r.data["user"] == {
        "follower_count": 110,
        "following_count": 5,
        "likes_count": 47,
        "video_count": 3,
    }


async def test_the_client_reads_counts_and_stats_and_raises_tiktoks_errors(world):
    await world.sb.control.freeze_time()
    ids = await _videos(
        world, "alice", 2, view_count=10, like_count=2, comment_count=1, share_count=0, growth=0
    )
    async with aiohttp.ClientSession(trust_env=False) as session:
        client = TikTokClient(session, world.sb.base_url, client_key=world.app.client_key, client_secret="x")
        answer = await display.query_videos(client, world.t, [*ids, "7000000000000000001"])
        assert sorted(answer.videos) == sorted(ids) and LOG_ID.match(answer.log_id)
        assert answer.videos[ids[0]] == display.VideoCounts(ids[0], 10, 2, 1, 0)
        stats = await display.account_stats(client, world.t)
        assert (stats.video_count, stats.likes_count) == (2, 4)
        with pytest.raises(ValueError, match="between 1 and 20"):
            await display.query_videos(client, world.t, [str(n) for n in range(21)])
        limited = await world.sb.control.issue_token(world.app.client_key, "alice", ["user.info.basic"])
        with pytest.raises(TikTokError) as refused:
            await display.account_stats(client, limited.access_token)
        assert refused.value.tiktok_code == "scope_not_authorized"
