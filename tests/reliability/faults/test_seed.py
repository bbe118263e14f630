"""The fault runs' seed: settable to replay a run, drawn afresh otherwise, refused when malformed."""

from __future__ import annotations

import pytest

from tests.reliability.faults.harness import fault_seed


@pytest.mark.parametrize(("env", "seed"), [({"FAULTS_SEED": "42"}, 42), ({"FAULTS_SEED": " 7 "}, 7)])
def test_faults_seed_sets_the_seed(env: dict[str, str], seed: int) -> None:
    assert fault_seed(env) == seed


@pytest.mark.parametrize("env", [{}, {"FAULTS_SEED": ""}])
def test_without_faults_seed_a_fresh_seed_is_drawn(env: dict[str, str]) -> None:
    seeds = {fault_seed(env) for _ in range(8)}
    assert len(seeds) > 1 and all(1 <= s < 2**31 for s in seeds)


def test_a_seed_that_is_not_an_integer_is_refused_naming_the_variable() -> None:
    with pytest.raises(pytest.UsageError, match=r"FAULTS_SEED must be an integer .* not 'abc'"):
        fault_seed({"FAULTS_SEED": "abc"})
