import hashlib

from tests.sandbox.conftest import MIB, payload


async def test_direct_post_file_upload_end_to_end(world):
    data = payload(12 * MIB)
    r = await world.api.init_direct(world.t, len(data), 5 * MIB, 2, privacy="PUBLIC_TO_EVERYONE")
    assert r.status == 200, r.body
    assert await world.api.upload(r.data["upload_url"], data, 5 * MIB) == [206, 201]
    await world.sb.control.advance_time(10)
    s = await world.api.status(world.t, r.data["publish_id"])
    assert s.data["status"] == "PUBLISH_COMPLETE"
    post = await world.sb.control.post(r.data["publish_id"])
    assert post["sha256"] == hashlib.sha256(data).hexdigest()
