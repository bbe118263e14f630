"""Applying account and access-token events (played by auth_service) to this service's tables.

Read by the shared ``ConsumeLoop`` from a full-topic source: ``decode`` types a record by its topic
(a tombstone decodes to ``None``). These topics are read in full by every replica, and intake waits
until they are caught up, so one record that cannot be applied must never stop the reader: a record
that will never decode, whose token does not open for its version, or that the database refuses is
skipped, counted (``state_event_bad{topic,code}``) and logged (auth_service owns these topics: not
ours to dead-letter), and the records behind it take effect.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from common.cipher import DecryptionFailed, TokenCipher, transport_purpose
from common.db import REFUSED_VALUE
from common.events import AccessTokenData, AccountData, BadEvent, decode
from common.kafka import ConsumerRecord
from common.kafka.consume import Decoded, Undecodable
from publish_service.handlers.ports import StateStore

log = structlog.get_logger(__name__)

StateEvent = AccountData | AccessTokenData | None
"""What a state record carries; ``None`` is a tombstone (the account is gone)."""

BadRecordCounter = Callable[[str, str], None]
"""Told of every skipped record: its topic and the code of what was wrong with it."""

REFUSED_BY_DATABASE = "refused_by_database"


class StateSync:
    def __init__(
        self,
        repo: StateStore,
        accounts_topic: str,
        tokens_topic: str,
        on_bad: BadRecordCounter | None = None,
        cipher: TokenCipher | None = None,
    ) -> None:
        self.repo = repo
        self.accounts_topic = accounts_topic
        self.tokens_topic = tokens_topic
        self._on_bad = on_bad
        self._cipher = cipher

    def decode(self, record: ConsumerRecord[bytes, bytes]) -> StateEvent:
        if record.value is None:
            return None
        if record.topic == self.tokens_topic:
            return decode(record.value, AccessTokenData).data
        if record.topic == self.accounts_topic:
            return decode(record.value, AccountData).data
        raise BadEvent(f"not a state topic: {record.topic}")

    async def handle(self, item: Decoded[StateEvent]) -> None:
        try:
            await self._apply(item)
        except DecryptionFailed as exc:
            self._bad(item.record, exc.code, exc.message)
        except REFUSED_VALUE as exc:
            # A value the model let through and Postgres refuses (out of range, bad text): it will
            # be refused every time, so retrying it would stop every record behind it for good.
            self._bad(item.record, REFUSED_BY_DATABASE, f"{type(exc).__name__}: {exc}")

    async def _apply(self, item: Decoded[StateEvent]) -> None:
        record = item.record
        match item.event:
            case None:
                if record.topic == self.tokens_topic and record.key:
                    # auth_service's tombstone on disconnect: the token must not outlive the account.
                    account_id = record.key.decode("utf-8", errors="replace")
                    if await self.repo.forget_token(account_id):
                        log.info("access_token_forgotten", account_id=account_id)
            case AccessTokenData() as token:
                self._check_sealed_for(token)
                if await self.repo.upsert_token(token):
                    log.info(
                        "access_token_updated", account_id=token.account_id, token_version=token.token_version
                    )
            case AccountData() as account:
                if await self.repo.upsert_account(account, record.partition, record.offset):
                    log.info("account_updated", account_id=account.account_id, status=account.status.value)

    def _check_sealed_for(self, token: AccessTokenData) -> None:
        """Refuse a ciphertext that does not open for this account and *this* version: a genuine older
        record replayed with a rewritten, higher version would otherwise shadow every later token.
        One under a key id this replica does not know yet (mid-rotation) is kept, as before: it is
        opened, or refused, when a post needs it."""
        if self._cipher is None or not self._cipher.knows_key_of(token.ciphertext):
            return
        self._cipher.decrypt(
            token.ciphertext, account_id=token.account_id, purpose=transport_purpose(token.token_version)
        )

    def log_bad(self, item: Undecodable) -> None:
        """The loop's hook for a record that will never decode."""
        self._bad(item.record, item.error.code, item.error.message)

    def _bad(self, record: ConsumerRecord[bytes, bytes], code: str, message: str) -> None:
        log.warning(
            "state_event_bad",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            error_code=code,
            error=message[:300],
        )
        if self._on_bad is not None:
            self._on_bad(record.topic, code)
