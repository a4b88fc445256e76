from __future__ import annotations

import ipaddress

import pytest

from libs.common.ssrf import EgressPolicy, EgressRefused, check_url, validate_base_url

STRICT = EgressPolicy()
LOCAL = EgressPolicy(allow_loopback=True)


@pytest.mark.parametrize(
    ("address", "strict", "local"),
    [
        ("8.8.8.8", True, True),
        ("2606:4700:4700::1111", True, True),
        ("127.0.0.1", False, True),
        ("::1", False, True),
        ("169.254.169.254", False, False),
        ("10.0.0.1", False, False),
        ("172.16.1.1", False, False),
        ("192.168.0.1", False, False),
        ("100.64.1.1", False, False),
        ("::ffff:169.254.169.254", False, False),
        ("::ffff:127.0.0.1", False, True),
        ("2002:a9fe:a9fe::1", False, False),  # 6to4 of 169.254.169.254
        ("fd00:ec2::254", False, False),
        ("fe80::1", False, False),
        ("0.0.0.0", False, False),
        ("224.0.0.1", False, False),
        ("240.0.0.1", False, False),
    ],
)
def test_policy_table(address, strict, local):
    ip = ipaddress.ip_address(address)
    assert (STRICT.refusal(ip) is None) is strict
    assert (LOCAL.refusal(ip) is None) is local


def test_explicit_allow_list_wins_but_not_over_metadata_by_accident():
    policy = EgressPolicy.from_settings(
        allow_loopback=False, allow_private=False, allowed_networks=["10.9.0.0/16"]
    )
    assert policy.refusal(ipaddress.ip_address("10.9.1.1")) is None
    assert policy.refusal(ipaddress.ip_address("10.8.1.1")) is not None
    assert policy.refusal(ipaddress.ip_address("169.254.169.254")) is not None


@pytest.mark.parametrize(
    "url",
    [
        "ftp://x/",
        "http://",
        "http://u:p@host/",
        "https://host/?a=1",
        "https://host/#f",
        "not a url",
        "http://h:0/",
    ],
)
def test_base_url_syntax(url):
    with pytest.raises(EgressRefused):
        validate_base_url(url)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "url",
    [
        "http://2852039166/",
        "http://0251.0376.0251.0376/",
        "http://0xa9.0xfe.0xa9.0xfe/",
        "http://[::ffff:a9fe:a9fe]/",
    ],
)
async def test_numeric_spellings_of_the_metadata_address_are_refused(url):
    with pytest.raises(EgressRefused):
        await check_url(url, LOCAL)


@pytest.mark.asyncio
async def test_unresolvable_names_pass_the_save_time_check():
    await check_url("https://no-such-host.invalid/v1", STRICT)
