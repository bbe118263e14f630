-- A token answer without refresh_expires_in leaves the refresh token's expiry unknown (NULL), not
-- past: the account keeps refreshing and TikTok's answer to the refresh decides (issue 13, point 2).
ALTER TABLE accounts ALTER COLUMN refresh_expires_at DROP NOT NULL;
