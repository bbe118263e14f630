-- The original Kafka key of the request, so a post rejected after intake (e.g. unknown_account once
-- its grace has passed) goes to the dead-letter topic under its original key, as for any dead letter.
ALTER TABLE posts ADD COLUMN raw_key bytea;
