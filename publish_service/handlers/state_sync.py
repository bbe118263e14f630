"""Applying account and access-token events (played by auth_service) to this service's tables."""

from __future__ import annotations

import structlog

from common.events import AccessTokenData, AccountData, BadEvent, decode
from common.kafka import ConsumerRecord
from publish_service.handlers.ports import StateStore

log = structlog.get_logger(__name__)


class StateSync:
    def __init__(self, repo: StateStore, accounts_topic: str, tokens_topic: str) -> None:
        self.repo = repo
        self.accounts_topic = accounts_topic
        self.tokens_topic = tokens_topic

    async def handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        if record.value is None:
            return  # a tombstone: the account is gone; its posts will fail on a missing token
        try:
            if record.topic == self.tokens_topic:
                token = decode(record.value, AccessTokenData).data
                if await self.repo.upsert_token(token):
                    log.info(
                        "access_token_updated", account_id=token.account_id, token_version=token.token_version
                    )
            elif record.topic == self.accounts_topic:
                account = decode(record.value, AccountData).data
                if await self.repo.upsert_account(account, record.partition, record.offset):
                    log.info("account_updated", account_id=account.account_id, status=account.status.value)
        except BadEvent as exc:
            # Not ours to dead-letter (auth_service owns these topics); skip and say so.
            log.warning(
                "state_event_bad",
                topic=record.topic,
                offset=record.offset,
                error_code=exc.code,
                error=exc.message,
            )
