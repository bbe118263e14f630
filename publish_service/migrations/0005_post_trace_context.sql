-- The W3C trace context (traceparent/tracestate) of the request's Kafka record, or NULL when the
-- producer sent none or tracing is off: the worker's steps continue that trace (common/tracing.py).
ALTER TABLE posts ADD COLUMN IF NOT EXISTS trace_context jsonb;
