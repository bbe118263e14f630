-- The W3C trace context (traceparent/tracestate) of the span that enqueued an event, or NULL when
-- tracing is off: the outbox relay sends it in the record's headers, so a status event continues
-- the trace of the change that caused it (common/outbox.py, common/tracing.py).
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS trace_context jsonb;
