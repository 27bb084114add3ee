"""Settings come from FLASHCLAIM_* variables, typed, and fail loudly when wrong."""

from __future__ import annotations

import pytest

from gateway.infra.settings import ConfigError, Settings

SECRETS = {
    "FLASHCLAIM_JWT_SECRET": "j" * 32,
    "FLASHCLAIM_ADMIN_TOKEN": "a" * 32,
}


def test_defaults_and_conversion():
    settings = Settings.from_env(
        {
            **SECRETS,
            "FLASHCLAIM_WORKERS": "4",
            "FLASHCLAIM_TRUST_FORWARDED_FOR": "true",
            "OTHER_VARIABLE": "ignored",
        }
    )
    assert settings.workers == 4
    assert settings.trust_forwarded_for is True
    assert settings.port == 8080
    assert settings.max_body_bytes == 4096


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "FLASHCLAIM_JWT_SECRET must be set"),
        ({**SECRETS, "FLASHCLAIM_JWT_SECRET": "short"}, "FLASHCLAIM_JWT_SECRET"),
        ({**SECRETS, "FLASHCLAIM_PORT": "eighty"}, "FLASHCLAIM_PORT: Expected `int`"),
        ({**SECRETS, "FLASHCLAIM_WORKERS": "0"}, "FLASHCLAIM_WORKERS"),
        ({**SECRETS, "FLASHCLAIM_PROT": "8080"}, "FLASHCLAIM_PROT is not a flashclaim setting"),
    ],
)
def test_bad_environment_names_the_variable(environ, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(environ)
