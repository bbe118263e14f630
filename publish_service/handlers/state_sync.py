"""Applying account and access-token events (played by auth_service) to this service's tables.

These topics are read in full by every replica, and intake waits until they are caught up, so one
record that cannot be applied must never stop the reader: it is skipped, counted
(``state_event_bad{topic,code}``) and logged, and the records behind it take effect. Only a database
that is away (a transient error) stops the reader, which then starts again from the beginning.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from common.cipher import DecryptionFailed, TokenCipher, transport_purpose
from common.db import REFUSED_VALUE
from common.events import AccessTokenData, AccountData, BadEvent, decode
from common.kafka import ConsumerRecord
from publish_service.handlers.ports import StateStore

log = structlog.get_logger(__name__)

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

    async def handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            await self._apply(record)
        except BadEvent as exc:
            # Not ours to dead-letter (auth_service owns these topics); skip and say so.
            self._bad(record, exc.code, exc.message)
        except DecryptionFailed as exc:
            self._bad(record, exc.code, exc.message)
        except REFUSED_VALUE as exc:
            # A value the model let through and Postgres refuses (out of range, bad text): it will
            # be refused every time, so retrying it would stop every record behind it for good.
            self._bad(record, REFUSED_BY_DATABASE, f"{type(exc).__name__}: {exc}")

    async def _apply(self, record: ConsumerRecord[bytes, bytes]) -> None:
        if record.value is None:
            if record.topic == self.tokens_topic and record.key:
                # auth_service's tombstone on disconnect: the token must not outlive the account here.
                account_id = record.key.decode("utf-8", errors="replace")
                if await self.repo.forget_token(account_id):
                    log.info("access_token_forgotten", account_id=account_id)
            return
        if record.topic == self.tokens_topic:
            token = decode(record.value, AccessTokenData).data
            self._check_sealed_for(token)
            if await self.repo.upsert_token(token):
                log.info(
                    "access_token_updated", account_id=token.account_id, token_version=token.token_version
                )
        elif record.topic == self.accounts_topic:
            account = decode(record.value, AccountData).data
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
