from __future__ import annotations

import pytest

from libs.common.crypto import generate_key
from libs.common.settings import SettingsError, check_not_placeholder, load_settings
from services.provider_svc.settings import ProviderSettings


@pytest.mark.parametrize(
    "value", ["changeme", "CHANGE_ME", "replace-me", "<secret>", "${KEY}", "xxxx", "your-key-here", ""]
)
def test_placeholders_are_refused(value):
    with pytest.raises(ValueError, match="placeholder"):
        check_not_placeholder(value)


def test_load_settings_names_the_variable_not_the_value(monkeypatch):
    monkeypatch.setenv("ENCRYPTION_KEYS", "definitely-not-a-key-SECRET-VALUE")
    monkeypatch.setenv("BOOTSTRAP_ADMIN_KEY", "changeme")
    monkeypatch.setenv("LOG_LEVEL", "LOUD")
    with pytest.raises(SettingsError) as info:
        load_settings(ProviderSettings)
    message = str(info.value)
    assert "ENCRYPTION_KEYS" in message and "BOOTSTRAP_ADMIN_KEY" in message and "LOG_LEVEL" in message
    assert "SECRET-VALUE" not in message and "changeme" not in message


def test_valid_settings_load(monkeypatch):
    monkeypatch.setenv("ENCRYPTION_KEYS", generate_key())
    monkeypatch.setenv("PROVIDER_GRPC_PORT", "6000")
    monkeypatch.setenv("SSRF_ALLOWED_NETWORKS", "10.1.0.0/16, 192.168.7.7")
    settings = load_settings(ProviderSettings)
    assert settings.provider_grpc_port == 6000
    assert settings.allowed_networks() == ["10.1.0.0/16", "192.168.7.7"]
    assert "ENCRYPTION" not in repr(settings.encryption_keys) or "**" in repr(settings.encryption_keys)


def test_infrastructure_is_required(monkeypatch):
    monkeypatch.setenv("ENCRYPTION_KEYS", generate_key())
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("NATS_URL", raising=False)
    settings = load_settings(ProviderSettings)
    with pytest.raises(SettingsError, match="DATABASE_URL, NATS_URL: required"):
        settings.require_infrastructure()
