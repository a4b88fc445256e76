from __future__ import annotations

import pytest

from libs.common.crypto import DecryptionError, Keyring, generate_key


def test_round_trip_and_owner_binding():
    ring = Keyring.from_setting(generate_key())
    sealed = ring.encrypt(owner="prv_a", plaintext="sk-secret")
    assert b"sk-secret" not in sealed.ciphertext
    assert ring.decrypt(owner="prv_a", ciphertext=sealed.ciphertext) == "sk-secret"
    with pytest.raises(DecryptionError):
        ring.decrypt(owner="prv_b", ciphertext=sealed.ciphertext)


def test_rotation_re_encrypts_with_the_primary_key():
    old, new = generate_key(), generate_key()
    before = Keyring.from_setting(old)
    sealed = before.encrypt(owner="prv_a", plaintext="sk-secret")
    both = Keyring.from_setting(f"{new},{old}")
    assert both.decrypt(owner="prv_a", ciphertext=sealed.ciphertext) == "sk-secret"
    rotated = both.rotate(owner="prv_a", ciphertext=sealed.ciphertext)
    assert rotated.key_fingerprint == both.primary_fingerprint != sealed.key_fingerprint
    only_new = Keyring.from_setting(new)
    assert only_new.decrypt(owner="prv_a", ciphertext=rotated.ciphertext) == "sk-secret"
    with pytest.raises(DecryptionError):
        only_new.decrypt(owner="prv_a", ciphertext=sealed.ciphertext)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "at least one key"),
        ("changeme", "placeholder"),
        ("<your-key>", "placeholder"),
        ("c2hvcnQ=", "not a Fernet key"),
        ("!!!!not-base64-at-all-SECRET!!!!", "not a Fernet key"),
        ("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "entropy"),
    ],
)
def test_bad_settings_are_refused_without_echoing_them(value, message):
    with pytest.raises(ValueError, match=message) as info:
        Keyring.from_setting(value)
    if value:
        assert value not in str(info.value)


def test_duplicate_keys_are_refused():
    key = generate_key()
    with pytest.raises(ValueError, match="same key twice"):
        Keyring.from_setting(f"{key},{key}")
