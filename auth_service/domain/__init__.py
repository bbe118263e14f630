"""Pure rules of auth_service: token schedule, account state machine, OAuth state. No I/O here."""
