"""`[redis] fail_open`: what Quarterdeck's own keyed requests do while Redis is unreachable."""

from __future__ import annotations

import pytest

from app.config import ConfigError, parse_config


def test_keyed_requests_fail_closed_unless_the_file_says_fail_open():
    assert parse_config({"redis": {}}).redis.fail_open is False
    assert parse_config({"redis": {"fail_open": True}}).redis.fail_open is True


def test_a_fail_open_that_is_not_a_boolean_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"\[redis\] fail_open must be true or false"):
        parse_config({"redis": {"fail_open": "yes"}})
