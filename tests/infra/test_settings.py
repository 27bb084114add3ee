"""Settings come from FLASHCLAIM_* variables, typed, and fail loudly when wrong: every
problem at once, each naming its variable; Kubernetes' service links are not problems."""

from __future__ import annotations

import pytest

from gateway.infra.settings import ConfigError, Settings, to_env

SECRETS = {
    "FLASHCLAIM_JWT_SECRET": "j" * 32,
    "FLASHCLAIM_ADMIN_TOKEN": "a" * 32,
}

#: What Kubernetes gives every pod of a namespace holding Services named flashclaim-gateway
#: (port named http) and flashclaim-relay, and a Service named plainly "flashclaim".
SERVICE_LINKS = {
    "FLASHCLAIM_GATEWAY_SERVICE_HOST": "10.96.0.11",
    "FLASHCLAIM_GATEWAY_SERVICE_PORT": "80",
    "FLASHCLAIM_GATEWAY_SERVICE_PORT_HTTP": "80",
    "FLASHCLAIM_GATEWAY_PORT": "tcp://10.96.0.11:80",
    "FLASHCLAIM_GATEWAY_PORT_80_TCP": "tcp://10.96.0.11:80",
    "FLASHCLAIM_GATEWAY_PORT_80_TCP_PROTO": "tcp",
    "FLASHCLAIM_GATEWAY_PORT_80_TCP_PORT": "80",
    "FLASHCLAIM_GATEWAY_PORT_80_TCP_ADDR": "10.96.0.11",
    "FLASHCLAIM_RELAY_SERVICE_HOST": "10.96.0.12",
    "FLASHCLAIM_RELAY_PORT_9101_TCP_ADDR": "10.96.0.12",
    "FLASHCLAIM_SERVICE_HOST": "10.96.0.13",
    "FLASHCLAIM_SERVICE_PORT": "8080",
}


def test_defaults_and_conversion():
    settings = Settings.from_env(
        {
            **SECRETS,
            "FLASHCLAIM_WORKERS": "4",
            "FLASHCLAIM_TRUST_FORWARDED_FOR": "true",
            "FLASHCLAIM_LOG_LEVEL": "debug",
            "OTHER_VARIABLE": "ignored",
        }
    )
    assert settings.workers == 4
    assert settings.trust_forwarded_for is True
    assert settings.port == 8080
    assert settings.max_body_bytes == 4096
    assert settings.log_level == "DEBUG"


def test_kubernetes_service_links_are_not_settings():
    settings = Settings.from_env({**SECRETS, **SERVICE_LINKS, "FLASHCLAIM_PORT": "9000"})
    assert settings.port == 9000


def test_a_typo_is_still_an_error_among_service_links():
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**SECRETS, **SERVICE_LINKS, "FLASHCLAIM_METRIC_PORT": "9101"})
    assert caught.value.problems == ["FLASHCLAIM_METRIC_PORT is not a flashclaim setting"]


def test_a_service_link_landing_on_a_setting_says_so():
    with pytest.raises(ConfigError, match="enableServiceLinks: false"):
        Settings.from_env({**SECRETS, "FLASHCLAIM_PORT": "tcp://10.96.0.13:8080"})


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({**SECRETS, "FLASHCLAIM_JWT_SECRET": "short"}, "FLASHCLAIM_JWT_SECRET"),
        ({**SECRETS, "FLASHCLAIM_PORT": "eighty"}, "FLASHCLAIM_PORT: Expected `int`"),
        ({**SECRETS, "FLASHCLAIM_WORKERS": "0"}, "FLASHCLAIM_WORKERS"),
        ({**SECRETS, "FLASHCLAIM_PROT": "8080"}, "FLASHCLAIM_PROT is not a flashclaim setting"),
        ({**SECRETS, "FLASHCLAIM_LOG_LEVEL": "LOUD"}, "must be one of DEBUG, INFO"),
        ({**SECRETS, "FLASHCLAIM_LOG_FORMAT": "xml"}, "FLASHCLAIM_LOG_FORMAT must be one of"),
    ],
)
def test_bad_environment_names_the_variable(environ, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(environ)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(
            {"FLASHCLAIM_PORT": "eighty", "FLASHCLAIM_WORKERS": "0", "FLASHCLAIM_PROT": "1"},
            require=("jwt_secret", "admin_token"),
        )
    problems = caught.value.problems
    assert len(problems) == 5, problems
    for variable in ("PORT", "WORKERS", "PROT", "JWT_SECRET", "ADMIN_TOKEN"):
        assert any(f"FLASHCLAIM_{variable}" in problem for problem in problems), problems


def test_secrets_are_needed_only_where_asked():
    assert Settings.from_env({}).jwt_secret == ""  # migrate, reconcile, campaign ...
    with pytest.raises(ConfigError, match="FLASHCLAIM_JWT_SECRET must be set"):
        Settings.from_env({}, require=("jwt_secret",))
    assert "FLASHCLAIM_JWT_SECRET" not in to_env(Settings.from_env({}))  # stays unset
