-- auth_service: connected TikTok accounts with their encrypted tokens, and pending OAuth sign-ins.
-- Runs with search_path set to the service's schema (common.db.apply_migrations).

CREATE TABLE accounts (
    id                 text PRIMARY KEY,
    client_key         text NOT NULL,
    open_id            text NOT NULL,
    status             text NOT NULL CHECK (status IN ('connected', 'reauth_required')),
    scopes             text[] NOT NULL DEFAULT '{}',
    display_name       text,
    union_id           text,
    avatar_url         text,
    -- AES-256-GCM ciphertexts (common.cipher): "v1.<key id>.<blob>", bound to (id, purpose).
    access_token_ct    text NOT NULL,
    refresh_token_ct   text NOT NULL,
    token_version      bigint NOT NULL DEFAULT 1,
    access_expires_at  timestamptz NOT NULL,
    refresh_expires_at timestamptz NOT NULL,
    -- The refresh schedule: NULL when nothing is scheduled (reauth_required).
    refresh_due_at     timestamptz,
    -- A replica claims a due account by writing its lease; see handlers/refresh.py for why a lease.
    lease_owner        text,
    lease_until        timestamptz,
    refresh_failures   integer NOT NULL DEFAULT 0,
    last_error         text,
    last_refreshed_at  timestamptz,
    -- The transport key the latest access-token event was encrypted with (rotate-keys re-announces).
    transport_key_id   text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT accounts_one_per_tiktok_user UNIQUE (client_key, open_id)
);

-- The refresh loop's claim query: due, connected accounts in due order.
CREATE INDEX accounts_refresh_due ON accounts (refresh_due_at) WHERE status = 'connected';

CREATE TABLE oauth_states (
    state_hash        bytea PRIMARY KEY,      -- sha256 of the state parameter
    browser_hash      bytea NOT NULL,         -- sha256 of the browser-binding cookie
    code_verifier_ct  text,                   -- PKCE verifier (desktop apps), encrypted
    created_at        timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz NOT NULL,
    consumed_at       timestamptz
);

CREATE INDEX oauth_states_created ON oauth_states (created_at);

-- The transactional outbox (common/outbox.py): events are written in the transaction of the state
-- change; the relay publishes them after commit and deletes them once Kafka acknowledged.
CREATE TABLE outbox (
    id         bigserial PRIMARY KEY,
    topic      text        NOT NULL,
    key        bytea       NOT NULL,
    value      bytea,
    headers    jsonb       NOT NULL DEFAULT '[]',
    created_at timestamptz NOT NULL DEFAULT now()
);
