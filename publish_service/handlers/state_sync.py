"""Applying account and access-token events (played by auth_service) to this service's tables.

Read by the shared ``ConsumeLoop`` from a full-topic source: ``decode`` types a record by its topic
(a tombstone decodes to ``None``), and a record that will never decode is logged and skipped by the
loop (auth_service owns these topics: not ours to dead-letter).
"""

from __future__ import annotations

import structlog

from common.events import AccessTokenData, AccountData, BadEvent, decode
from common.kafka import ConsumerRecord
from common.kafka.consume import Decoded, Undecodable
from publish_service.handlers.ports import StateStore

log = structlog.get_logger(__name__)

StateEvent = AccountData | AccessTokenData | None
"""What a state record carries; ``None`` is a tombstone (the account is gone)."""


class StateSync:
    def __init__(self, repo: StateStore, accounts_topic: str, tokens_topic: str) -> None:
        self.repo = repo
        self.accounts_topic = accounts_topic
        self.tokens_topic = tokens_topic

    def decode(self, record: ConsumerRecord[bytes, bytes]) -> StateEvent:
        if record.value is None:
            return None
        if record.topic == self.tokens_topic:
            return decode(record.value, AccessTokenData).data
        if record.topic == self.accounts_topic:
            return decode(record.value, AccountData).data
        raise BadEvent(f"not a state topic: {record.topic}")

    async def handle(self, item: Decoded[StateEvent]) -> None:
        match item.event:
            case None:
                return  # a tombstone: the account is gone; its posts will fail on a missing token
            case AccessTokenData() as token:
                if await self.repo.upsert_token(token):
                    log.info(
                        "access_token_updated", account_id=token.account_id, token_version=token.token_version
                    )
            case AccountData() as account:
                if await self.repo.upsert_account(account, item.record.partition, item.record.offset):
                    log.info("account_updated", account_id=account.account_id, status=account.status.value)

    @staticmethod
    def log_bad(item: Undecodable) -> None:
        log.warning(
            "state_event_bad",
            topic=item.record.topic,
            offset=item.record.offset,
            error_code=item.error.code,
            error=item.error.message,
        )
