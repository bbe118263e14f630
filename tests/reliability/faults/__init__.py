"""The guarantees of DESIGN.md under failures, end to end, with the services as real processes.

- ``test_processes.py`` (``make soak`` runs it with ``SOAK=1``): 100 posts (4 creators; 1-6 MB videos
  and ten 70 MB ones in 5 MiB chunks) while publish_service is SIGKILLed 12 times (half at random
  moments, half the moment a post is part-way through its upload), auth_service is SIGKILLed in the
  middle of token refreshes (60 s access tokens), a dedicated Kafka broker is stopped and started,
  and a dedicated PostgreSQL is crashed and started.
- ``test_network.py``: faults between the services and TikTok, through tests/reliability/proxy.py:
  latency and connections cut mid-stream, then a peer that accepts and never answers (the calls must
  time out, and the posts complete once the stall is lifted); a chunk PUT to a peer that stops reading.
- ``test_refresh_during_outage.py``: a token refresh TikTok answers while PostgreSQL is down.

Afterwards (``verdict.py``): every post terminal; each published post at the sandbox exactly once
with the source's bytes; every state change on the status topic (seq 1..n per post, ending in the
terminal state); no account lost; TikTok's per-token limits held.

Random moments come from ``random.Random(seed)``; the seed is printed, and ``FAULTS_SEED=<n>``
replays it (``harness.py``). ``SOAK=1`` runs a longer variant (more posts, more kills). Counts go
to ``.stack/reports/faults.json`` (``bench/faults_report.py`` prints them).
"""
