"""The guarantees of DESIGN.md, checked from the outside after a fault run.

:func:`verify` gathers what an operator can see (each post's state, the sandbox's posts and call
counts, the status topic, the accounts); :func:`assert_guarantees` is the spec:

- nothing lost: every post terminal, and each ``published`` one is at TikTok;
- nothing doubled: at most one completed post at TikTok per request;
- the bytes at TikTok are the source's;
- every state change on the status topic, ``seq`` 1..n per post, ending in the post's state;
- TikTok's per-token rate limits held (and TikTok never answered 429);
- no account lost (all still ``connected``); no post failed.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.events import PostStatusData
from tests.reliability.faults.harness import TERMINAL, Run


@dataclass
class Verdict:
    posts: int
    published: int
    failed: dict[str, str]
    losses: list[str]
    duplicates: dict[str, int]
    wrong_bytes: list[str]
    event_gaps: dict[str, str]
    abandoned_inits: int
    limits_exceeded: list[str]
    rate_limited_total: int
    reauth_required: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "posts": self.posts,
            "published": self.published,
            "failed": len(self.failed),
            "failed_codes": sorted(set(self.failed.values())),
            "losses": len(self.losses),
            "duplicates": len(self.duplicates),
            "wrong_bytes": len(self.wrong_bytes),
            "event_gaps": len(self.event_gaps),
            "abandoned_inits": self.abandoned_inits,
            "limits_exceeded": self.limits_exceeded,
            "rate_limited_total": self.rate_limited_total,
            "reauth_required": len(self.reauth_required),
        }


async def verify(run: Run, states: dict[str, dict[str, Any]], limits: dict[str, int]) -> Verdict:
    """Everything DESIGN.md's guarantees promise, checked from the outside."""
    sandbox_posts = await run.sandbox("/_sandbox/posts")
    by_post: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in sandbox_posts:
        title = (item.get("post_info") or {}).get("title") or ""
        by_post[title.removeprefix("fault run ")].append(item)
    done = ("PUBLISH_COMPLETE", "SEND_TO_USER_INBOX")
    published = [p for p, s in states.items() if s["state"] == "published"]
    failed = {
        p: (s.get("error") or {}).get("code") or "?" for p, s in states.items() if s["state"] == "failed"
    }
    losses = [p for p in run.posts if states.get(p, {}).get("state") not in TERMINAL]
    duplicates: dict[str, int] = {}
    wrong_bytes: list[str] = []
    abandoned = 0
    for post_id, video in run.posts.items():
        completed = [i for i in by_post.get(post_id, []) if i["status"] in done]
        abandoned += sum(1 for i in by_post.get(post_id, []) if i["status"] not in done)
        if len(completed) > 1:
            duplicates[post_id] = len(completed)
        if post_id in published:
            if not completed:
                losses.append(post_id)  # "published" here, nothing at TikTok
            elif any((i["size"], i["sha256"]) != (video.size, video.sha256) for i in completed):
                wrong_bytes.append(post_id)
        elif completed:
            duplicates[post_id] = len(completed)  # at TikTok, yet not reported published
    events = await run.status_events()
    gaps: dict[str, str] = {}
    for post_id in run.posts:
        unique: dict[str, PostStatusData] = {}
        for event_id, data in events.get(post_id, []):
            unique.setdefault(event_id, data)
        seqs = sorted({d.seq for d in unique.values()})
        last = max(unique.values(), key=lambda d: d.seq, default=None)
        final = states.get(post_id, {})
        if seqs != list(range(1, len(seqs) + 1)):
            gaps[post_id] = f"seqs {seqs}"
        elif last is None or last.state.value != final.get("state") or last.seq != final.get("seq"):
            gaps[post_id] = f"last event {last and (last.seq, last.state.value)} vs row {final}"
    calls = await run.sandbox("/_sandbox/calls")
    exceeded = [
        f"{c['endpoint']}: {c['max_in_window']} > {limits[c['endpoint']]}"
        for c in calls["calls"]
        if c["endpoint"] in limits and c["max_in_window"] > limits[c["endpoint"]]
    ]
    accounts = await run.accounts_status()
    return Verdict(
        posts=len(run.posts),
        published=len(published),
        failed=failed,
        losses=losses,
        duplicates=duplicates,
        wrong_bytes=wrong_bytes,
        event_gaps=gaps,
        abandoned_inits=abandoned,
        limits_exceeded=exceeded,
        rate_limited_total=int(calls["rate_limited_total"]),
        reauth_required=[a for a, s in accounts.items() if s != "connected"],
    )


def assert_guarantees(verdict: Verdict) -> None:
    assert not verdict.losses, f"posts lost: {verdict.losses}"
    assert not verdict.duplicates, f"posted more than once at TikTok: {verdict.duplicates}"
    assert not verdict.wrong_bytes, f"bytes at TikTok differ from the source: {verdict.wrong_bytes}"
    assert not verdict.event_gaps, f"status events missing or out of step: {verdict.event_gaps}"
    assert not verdict.limits_exceeded, f"per-token limits exceeded: {verdict.limits_exceeded}"
    assert verdict.rate_limited_total == 0, "TikTok answered 429: the shared rate window slipped"
    assert not verdict.reauth_required, f"accounts lost: {verdict.reauth_required}"
    assert not verdict.failed, f"posts failed: {verdict.failed}"


def log_counts(log: Path, events: tuple[str, ...]) -> dict[str, int]:
    """How often each event name appears in a service's JSON log (what the faults made it do)."""
    counts = dict.fromkeys(events, 0)
    for line in log.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line).get("event")
        except ValueError:
            continue
        if event in counts:
            counts[event] += 1
    return counts
