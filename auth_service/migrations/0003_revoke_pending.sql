-- #12.16: a disconnect whose revoke TikTok could not be made to accept yet keeps the account (and
-- its tokens) as 'revoke_pending', retried in the background until the grant is revoked or dead.
ALTER TABLE accounts DROP CONSTRAINT accounts_status_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_status_check
    CHECK (status IN ('connected', 'reauth_required', 'revoke_pending'));
ALTER TABLE accounts ADD COLUMN revoke_attempts integer NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN revoke_next_at timestamptz;
CREATE INDEX accounts_revoke_due ON accounts (revoke_next_at) WHERE status = 'revoke_pending';
