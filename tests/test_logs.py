"""Structured logs: JSON lines with the request id and the event's fields."""

from __future__ import annotations

import json
import logging
import sys

from onewindow.logs import JsonFormatter, request_id


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("onewindow.test", logging.INFO, __file__, 1, message, (), None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_a_line_is_one_json_object_with_the_request_id() -> None:
    token = request_id.set("abc123")
    try:
        line = JsonFormatter().format(_record("case closed", case_id="G-0107-42", ms=3.5))
    finally:
        request_id.reset(token)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "case closed"
    assert entry["level"] == "info"
    assert entry["logger"] == "onewindow.test"
    assert entry["request_id"] == "abc123"
    assert entry["case_id"] == "G-0107-42"
    assert entry["ms"] == 3.5
    assert entry["time"].endswith("+00:00")


def test_outside_a_request_there_is_no_request_id() -> None:
    entry = json.loads(JsonFormatter().format(_record("worker started")))
    assert "request_id" not in entry


def test_exceptions_are_kept_in_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record("job failed")
        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exception"]
