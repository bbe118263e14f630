"""Pure rules: refresh schedule, backoff, account transitions, OAuth state checks."""

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auth_service.domain.account import InvalidTransition, new_account_id, transition
from auth_service.domain.oauth_state import (
    StateExpired,
    StateRecord,
    StateReplayed,
    StateUnknown,
    StateWrongBrowser,
    check_state,
    digest,
    new_secret_value,
)
from auth_service.domain.schedule import RefreshPolicy
from common.backoff import Backoff
from common.events import AccountStatus

POLICY = RefreshPolicy()


@pytest.mark.parametrize(
    ("expires_in", "expected"),
    [
        (86_400, 69_120),  # classic 24 h: 80 %
        (7_200, 5_760),  # 2026 2 h: 80 % still leaves 24 min
        (1_200, 900),  # 80 % would leave 4 min: 5 min before expiry instead
        (600, 300),  # 5 min before expiry = half the lifetime
        (60, 30),  # too short for a 5-min lead: half the lifetime
        (0, 0),
    ],
)
def test_base_delay_from_expires_in(expires_in, expected):
    assert POLICY.base_delay(expires_in) == pytest.approx(expected)


@given(
    expires_in=st.integers(min_value=1, max_value=400 * 86_400),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_refresh_always_before_expiry_and_never_later_than_the_rule(expires_in, seed):
    delay = POLICY.delay(expires_in, random.Random(seed))
    base = POLICY.base_delay(expires_in)
    assert 0 < delay <= base < expires_in
    assert delay >= base * (1 - POLICY.jitter)
    lead = expires_in - base
    # At least 5 minutes before expiry, unless that would refresh in the first half of the lifetime.
    assert lead >= min(300, expires_in * 0.5) - 1e-6
    assert lead >= expires_in * 0.2 - 1e-6


def test_jitter_spreads_accounts_connected_together():
    rng = random.Random(7)
    delays = {round(POLICY.delay(86_400, rng)) for _ in range(200)}
    assert len(delays) > 150
    when = POLICY.refresh_at(datetime(2026, 1, 1, tzinfo=UTC), 86_400, random.Random(1))
    assert datetime(2026, 1, 1, tzinfo=UTC) < when < datetime(2026, 1, 2, tzinfo=UTC)


@given(attempt=st.integers(min_value=1, max_value=100), seed=st.integers(min_value=0, max_value=1000))
def test_backoff_grows_and_is_capped(attempt, seed):
    backoff = Backoff(initial=2, maximum=300, jitter=0.5)
    delay = backoff.delay(attempt, random.Random(seed))
    ceiling = min(300, 2 * 2 ** (attempt - 1))
    assert ceiling / 2 <= delay <= ceiling


def test_policy_rejects_nonsense():
    with pytest.raises(ValueError):
        RefreshPolicy(fraction=1.2)
    with pytest.raises(ValueError):
        RefreshPolicy(jitter=1.0)


def test_account_transitions():
    assert transition(None, "connect") is AccountStatus.connected
    assert transition(AccountStatus.reauth_required, "connect") is AccountStatus.connected
    assert transition(AccountStatus.connected, "refresh") is AccountStatus.connected
    assert transition(AccountStatus.connected, "require_reauth") is AccountStatus.reauth_required
    assert transition(AccountStatus.reauth_required, "disconnect") is AccountStatus.disconnected
    with pytest.raises(InvalidTransition):
        transition(AccountStatus.reauth_required, "refresh")
    with pytest.raises(InvalidTransition):
        transition(None, "refresh")
    with pytest.raises(InvalidTransition):
        transition(AccountStatus.disconnected, "disconnect")


def test_account_ids_are_ours_and_random():
    ids = {new_account_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(i.startswith("acc_") and len(i) == 28 for i in ids)


def _record(now, *, nonce="n" * 43, consumed=False, age=timedelta(0)):
    created = now - age
    return StateRecord(
        state_hash=digest("s"),
        browser_hash=digest(nonce),
        created_at=created,
        expires_at=created + timedelta(minutes=10),
        consumed_before=consumed,
    )


def test_state_is_256_bits_url_safe():
    values = {new_secret_value() for _ in range(100)}
    assert len(values) == 100
    assert all(len(v) == 43 for v in values)  # 32 bytes base64url without padding


def test_state_checks():
    now = datetime(2026, 11, 22, 5, 0, tzinfo=UTC)
    nonce = "n" * 43
    assert check_state(_record(now), now=now, browser_nonce=nonce)
    with pytest.raises(StateUnknown):
        check_state(None, now=now, browser_nonce=nonce)
    with pytest.raises(StateReplayed):
        check_state(_record(now, consumed=True), now=now, browser_nonce=nonce)
    with pytest.raises(StateExpired):
        check_state(_record(now, age=timedelta(minutes=10)), now=now, browser_nonce=nonce)
    assert check_state(_record(now, age=timedelta(minutes=9, seconds=59)), now=now, browser_nonce=nonce)
    with pytest.raises(StateWrongBrowser):
        check_state(_record(now), now=now, browser_nonce="m" * 43)
    with pytest.raises(StateWrongBrowser):
        check_state(_record(now), now=now, browser_nonce=None)
