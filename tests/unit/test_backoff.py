"""The one retry schedule (common.backoff), as a table."""

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.backoff import Backoff


@pytest.mark.parametrize(
    ("backoff", "attempts", "delays"),
    [
        (Backoff(initial=1, factor=2, maximum=10, jitter=0), [1, 2, 3, 4, 5, 50], [1, 2, 4, 8, 10, 10]),
        (Backoff(initial=0.5, factor=2, maximum=30, jitter=0), [1, 2, 7, 8], [0.5, 1, 30, 30]),
        (Backoff(initial=900, factor=2, maximum=6 * 3600, jitter=0), [1, 5, 6], [900, 14400, 21600]),
        (Backoff(initial=3, factor=1, maximum=3, jitter=0), [1, 9], [3, 3]),
        (Backoff(initial=2, maximum=300, jitter=0), [0, -3], [2, 2]),
    ],
)
def test_delays_without_jitter(backoff: Backoff, attempts: list[int], delays: list[float]) -> None:
    assert [backoff.delay(a) for a in attempts] == delays


@given(
    attempt=st.integers(min_value=1, max_value=10_000),
    jitter=st.floats(min_value=0, max_value=1),
    seed=st.integers(min_value=0, max_value=1000),
)
def test_jitter_only_shortens_and_never_exceeds_the_cap(attempt: int, jitter: float, seed: int) -> None:
    backoff = Backoff(initial=2, factor=2, maximum=300, jitter=jitter)
    ceiling = backoff.ceiling(attempt)
    assert ceiling == min(300, 2 * 2 ** (attempt - 1))
    assert ceiling * (1 - jitter) <= backoff.delay(attempt, random.Random(seed)) <= ceiling <= 300


@pytest.mark.parametrize(
    "kwargs",
    [{"initial": -1}, {"initial": 5, "maximum": 1}, {"factor": 0.5}, {"jitter": 1.5}, {"jitter": -0.1}],
)
def test_nonsense_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)
