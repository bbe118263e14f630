-- posts.upload_url now holds the upload URL encrypted (v1.<key id>.<base64url>, bound to the post):
-- its upload_token is a bearer credential for an hour. URLs stored in plain text before this change
-- are dropped; such a post goes back to init (FILE_UPLOAD: TikTok cannot complete a post without our
-- bytes, so a new init cannot double-post), and a replica still running the old code that writes
-- one after this migration sees it not open and treats its upload task as gone the same way.
UPDATE posts SET upload_url = NULL, upload_url_issued_at = NULL
WHERE upload_url IS NOT NULL AND upload_url NOT LIKE 'v1.%';

-- Webhook receipts are pruned by age (TikTok re-delivers for at most 72 hours).
CREATE INDEX webhook_events_received_at ON webhook_events (received_at);
