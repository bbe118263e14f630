-- Insights (docs/insights.md): scheduled metrics fetches of published posts, and daily account stats.

-- A published post with a public id, as the planner first saw it, with its latest counts.
CREATE TABLE post_insights (
    post_id        text PRIMARY KEY,
    account_id     text NOT NULL,
    video_id       text NOT NULL,                 -- TikTok's public post id
    published_at   timestamptz NOT NULL,          -- the schedule counts from here
    scope_reported boolean NOT NULL DEFAULT false, -- insights_unavailable: scope_missing was said
    view_count     bigint,
    like_count     bigint,
    comment_count  bigint,
    share_count    bigint,
    fetched_at     timestamptz
);
CREATE INDEX post_insights_account ON post_insights (account_id);

-- One row per (post, slot of the schedule); a fetcher claims due rows of one account with a lease.
CREATE TABLE metric_slots (
    post_id     text NOT NULL,
    slot        integer NOT NULL,
    account_id  text NOT NULL,
    video_id    text NOT NULL,
    after_s     double precision NOT NULL,
    due_at      timestamptz NOT NULL,
    done_at     timestamptz,
    outcome     text,                              -- counts, video_unavailable, scope_missing, ended
    attempts    integer NOT NULL DEFAULT 0,        -- failed queries in a row
    lease_owner text,
    lease_until timestamptz,
    PRIMARY KEY (post_id, slot)
);
CREATE INDEX metric_slots_due ON metric_slots (due_at) WHERE done_at IS NULL;

-- Account stats: due on connect (and when the scopes change), then once per interval.
CREATE TABLE account_insights (
    account_id      text PRIMARY KEY,
    status          text,                          -- the account's status when the planner last looked
    scopes          text[] NOT NULL DEFAULT '{}',
    due_at          timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    lease_owner     text,
    lease_until     timestamptz,
    scope_reported  boolean NOT NULL DEFAULT false,
    follower_count  bigint,
    following_count bigint,
    likes_count     bigint,
    video_count     bigint,
    fetched_at      timestamptz
);
