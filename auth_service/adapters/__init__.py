"""I/O at the edges: the Postgres vault and repository, outgoing events, the Kafka consumer."""
