from __future__ import annotations

import pytest

from libs.common.errors import InvalidArgument
from libs.common.ids import new_id
from libs.common.names import validate_name
from libs.common.pagination import decode_page_token, encode_page_token, page_size
from libs.common.ratelimit import RateLimiter
from services.provider_svc.domain import api_key_hint, check_config


@pytest.mark.parametrize(
    ("key", "hint"),
    [("", ""), ("short", "…"), ("0123456789ab", "…ab"), ("sk-abcdefghijklmnopa1b2", "sk-…a1b2")],
)
def test_api_key_hint(key, hint):
    assert api_key_hint(key) == hint


@pytest.mark.parametrize("name", ["a", "abc-1", "x" * 63, "0day"])
def test_valid_names(name):
    assert validate_name(name, field="f") == name


@pytest.mark.parametrize("name", ["", "-a", "a-", "A", "a_b", "a b", "x" * 64, "ünï"])
def test_invalid_names(name):
    with pytest.raises(InvalidArgument) as info:
        validate_name(name, field="thing.name")
    assert info.value.violations[0].field == "thing.name"


def test_page_tokens_round_trip_and_bind_filters():
    token = encode_page_token(("default", "zeta"), {"type": "openai"})
    assert decode_page_token(token, {"type": "openai"}, arity=2) == ["default", "zeta"]
    with pytest.raises(InvalidArgument, match="other filters"):
        decode_page_token(token, {"type": "google"}, arity=2)
    with pytest.raises(InvalidArgument, match="not a token"):
        decode_page_token("garbage!!", {}, arity=2)
    assert decode_page_token("", {}, arity=2) is None
    assert page_size(0) == 50 and page_size(5000) == 1000
    with pytest.raises(InvalidArgument):
        page_size(-1)


def test_ids_are_prefixed_and_sortable():
    ids = [new_id("prv") for _ in range(50)]
    assert all(i.startswith("prv_") and len(i) == 30 for i in ids)
    assert len(set(ids)) == 50


def test_config_rules():
    assert check_config({"a": [1, {"b": "c"}]}, field_path="c") == {"a": [1, {"b": "c"}]}
    with pytest.raises(InvalidArgument) as info:
        check_config({"nested": [{"client_secret": "x"}]}, field_path="provider.config")
    assert info.value.violations[0].field == "provider.config.nested[0].client_secret"


def test_rate_limiter_refills():
    limiter = RateLimiter(rate=1000.0, burst=2)
    assert limiter.acquire("k") is None
    assert limiter.acquire("k") is None
    wait = limiter.acquire("k")
    assert wait is not None and 0 < wait <= 0.002
    assert limiter.acquire("other") is None
