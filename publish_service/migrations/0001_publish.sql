-- publish_service: posts and their durable state machine, the accounts' current tokens (from Kafka),
-- the per-token rate-limit log, webhook de-duplication and the transactional outbox.
-- Runs with search_path set to the publish schema (common.db.apply_migrations).

CREATE TABLE posts (
    post_id                text PRIMARY KEY,               -- the upstream's idempotency key
    account_id             text NOT NULL,
    request                jsonb NOT NULL,                 -- PostRequestedData as received
    request_hash           text NOT NULL,                  -- sha256 of the canonical request
    raw_event              bytea NOT NULL,                 -- the original record, for the DLQ
    correlation_id         text,
    state                  text NOT NULL,
    seq                    integer NOT NULL DEFAULT 0,     -- seq of the last status event emitted
    attempt                integer NOT NULL DEFAULT 1,     -- publish attempts (a new init after a TikTok failure)
    failures               integer NOT NULL DEFAULT 0,     -- transient failures in a row
    publish_at             timestamptz,
    next_attempt_at        timestamptz NOT NULL DEFAULT now(),
    lease_owner            text,
    lease_until            timestamptz,
    -- media, from HEAD and the header
    media_size             bigint,
    content_type           text,
    duration_s             double precision,
    chunk_size             bigint,
    total_chunks           integer,
    -- TikTok's side; saved before the bytes they cover are sent
    publish_id             text,
    upload_url             text,
    upload_url_issued_at   timestamptz,
    bytes_acked            bigint NOT NULL DEFAULT 0,      -- TikTok acknowledged bytes [0, bytes_acked)
    init_in_doubt          boolean NOT NULL DEFAULT false, -- an init was sent and its answer lost
    init_sent_at           timestamptz,
    tiktok_status          text,
    polls                  integer NOT NULL DEFAULT 0,
    tiktok_post_ids        text[] NOT NULL DEFAULT '{}',
    awaiting_post_id       boolean NOT NULL DEFAULT false, -- published, public id not yet known
    watch_until            timestamptz,
    awaiting_token_version bigint,                         -- blocked until a token newer than this
    error_code             text,
    error_message          text,
    error_retryable        boolean,
    error_log_id           text,
    progress_emitted_at    timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX posts_due ON posts (next_attempt_at)
    WHERE state IN ('received', 'scheduled', 'validating', 'uploading', 'processing') OR awaiting_post_id;
CREATE INDEX posts_publish_id ON posts (publish_id) WHERE publish_id IS NOT NULL;
CREATE INDEX posts_account_waiting ON posts (account_id) WHERE awaiting_token_version IS NOT NULL;

-- The latest public state and access token of each account, from the compacted topics.
CREATE TABLE accounts (
    account_id                text PRIMARY KEY,
    open_id                   text,
    status                    text,
    scopes                    text[] NOT NULL DEFAULT '{}',
    account_partition         integer,
    account_offset            bigint,                      -- Kafka offset of the account event applied
    token_version             bigint NOT NULL DEFAULT -1,
    token_ciphertext          text,                        -- still transport-encrypted at rest
    token_expires_at          timestamptz,
    refresh_requested_version bigint,
    refresh_requested_at      timestamptz,
    updated_at                timestamptz NOT NULL DEFAULT now()
);

-- One row per TikTok call that used a rate-limit slot (sliding-window log, spec §7.1).
CREATE TABLE rate_calls (
    account_id text NOT NULL,
    endpoint   text NOT NULL,
    at         timestamptz NOT NULL
);
CREATE INDEX rate_calls_window ON rate_calls (account_id, endpoint, at);

-- Webhook deliveries already handled (TikTok delivers at least once).
CREATE TABLE webhook_events (
    dedupe_key  text PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE outbox (
    id         bigserial PRIMARY KEY,
    topic      text        NOT NULL,
    key        bytea       NOT NULL,
    value      bytea,
    headers    jsonb       NOT NULL DEFAULT '[]',
    created_at timestamptz NOT NULL DEFAULT now()
);
