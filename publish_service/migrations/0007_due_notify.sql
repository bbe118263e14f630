-- Wake the workers within milliseconds of a post becoming due, instead of at their next poll: a row
-- that is due now and not leased (a new request, a lease given back with no delay, a webhook's wake)
-- sends a NOTIFY on "<schema>_posts_due", delivered at commit and not at all on rollback (PostgreSQL
-- folds the repeats of one transaction into one). The workers still poll as a fallback.
CREATE FUNCTION posts_due_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '_posts_due', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER posts_due_notify
    AFTER INSERT OR UPDATE OF next_attempt_at, lease_until, state ON posts
    FOR EACH ROW
    WHEN (NEW.lease_until IS NULL
          AND NEW.next_attempt_at <= now()
          AND (NEW.state IN ('received', 'scheduled', 'validating', 'uploading', 'processing')
               OR NEW.awaiting_post_id))
    EXECUTE FUNCTION posts_due_notify();
