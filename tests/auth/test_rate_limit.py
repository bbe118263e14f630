"""#12.11: the per-address token bucket for /v1/connect (pure, table-driven)."""

from __future__ import annotations

import pytest

from auth_service.domain.rate_limit import AddressLimiter


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # (address, time) per request, and whether each is allowed; 6/min, burst 3
        ([("a", 0), ("a", 0), ("a", 0)], [True, True, True]),
        ([("a", 0), ("a", 0), ("a", 0), ("a", 0)], [True, True, True, False]),
        ([("a", 0), ("a", 0), ("a", 0), ("a", 10)], [True, True, True, True]),  # 10 s refill one
        ([("a", 0), ("a", 0), ("a", 0), ("a", 5)], [True, True, True, False]),
        ([("a", 0), ("a", 0), ("a", 0), ("b", 0)], [True, True, True, True]),  # per address
    ],
)
def test_bucket(steps: list[tuple[str, float]], expected: list[bool]) -> None:
    limiter = AddressLimiter(per_minute=6, burst=3)
    assert [limiter.take(a, t) == 0 for a, t in steps] == expected


def test_refused_answer_says_how_long_to_wait() -> None:
    limiter = AddressLimiter(per_minute=6, burst=1)
    assert limiter.take("a", 0) == 0
    assert limiter.take("a", 0) == pytest.approx(10.0)
    assert limiter.take("a", 4) == pytest.approx(6.0)


def test_remembered_addresses_are_bounded() -> None:
    limiter = AddressLimiter(per_minute=6, burst=1, max_addresses=2)
    for address in ("a", "b", "c"):
        assert limiter.take(address, 0) == 0
    assert limiter.take("a", 0) == 0  # "a" was forgotten (oldest): a fresh bucket
    assert limiter.take("c", 0) > 0
