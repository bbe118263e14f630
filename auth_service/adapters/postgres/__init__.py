"""The Postgres side of auth_service, one module per aggregate.

- ``accounts``: account rows with their sealed tokens;
- ``claims``: refresh leases (the one claim query);
- ``oauth_states``: OAuth states with their sealed PKCE verifiers;
- ``events``: the events emitted through the outbox;
- ``repository``: ``Repository`` and its unit of work ``Tx``, composed of the above.
"""

from auth_service.adapters.postgres.events import account_data
from auth_service.adapters.postgres.repository import Repository, Tx
from auth_service.domain.tokens import Claim, NewTokens, Profile

__all__ = ["Claim", "NewTokens", "Profile", "Repository", "Tx", "account_data"]
