"""Refusal logs stay bounded."""

from __future__ import annotations

import logging

import pytest

from proxystore._ratelimit import RateLimitedLog


def test_rate_limited_log_keeps_one_line_per_key_and_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    log = RateLimitedLog(logging.getLogger("test.ratelimit"), 10.0, lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.ratelimit"):
        assert log.warning("a", "refused %s", 1)
        assert not any(log.warning("a", "refused %s", i) for i in range(500))
        assert log.warning("b", "other kind")
        now[0] += 10.0
        assert log.warning("a", "refused %s", 2)
    assert caplog.messages == [
        "refused 1",
        "other kind",
        "refused 2 (500 more like this in the last 10s not logged)",
    ]
