"""Hostile input against one running pipeline (the sandbox and both services as real processes).

Every case of the corpus (``kafka_cases.py`` for Kafka records, ``http_cases.py`` for HTTP requests)
gets a clear error naming the problem: a ``rejected`` status event with its ``error.code``, the DLQ
copy with the original bytes and an ``error_code`` header, or an HTTP status with a JSON error body.
Nothing is lost (each Kafka record is accounted for), nothing crashes (both services answer
``/healthz``, no ERROR line or traceback in their logs), and the consumer goes on: a valid post sent
behind the whole corpus is published byte-exact.

The corpus is sent once for the whole package (``conftest.py``); the test files read what came of it:

- ``test_http_requests.py``: each HTTP case, replayed webhooks, OAuth state replay;
- ``test_kafka_records.py``: each Kafka record, the valid post behind them, a repeated request,
  the state topics' readers, the log lines;
- ``test_nothing_crashed.py``: afterwards, both services healthy with no crash in their logs
  (pytest runs a directory's files in name order, so this one comes last).
"""
