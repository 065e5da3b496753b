"""Configuration: every problem listed at once, exit 2; development defaults only with --dev."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sio_push.config import DEV_SERVICE_KEY, load_settings
from sio_push.errors import ConfigError

GOOD = {"PUSH_SERVICE_KEY": "k" * 20, "PUSH_JWT_SECRET": "s" * 32}


def test_defaults():
    settings = load_settings(GOOD)
    assert settings.port == 4000 and settings.host == "0.0.0.0"
    assert settings.jwt_algorithms == ("HS256",) and settings.recovery_seconds == 120
    assert settings.max_body_bytes == 1024 * 1024 and not settings.callback_auth


def test_every_problem_is_listed_together():
    env = {
        "PUSH_JWT_SECRET": "short",
        "PORT": "http",
        "PUSH_RECOVERY_SECONDS": "-1",
        "PUSH_REDIS_URL": "localhost:6379",
        "PUSH_JWT_ALGORITHMS": "none",
        "PUSH_LOG_FORMAT": "xml",
    }
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    text = "\n".join(caught.value.problems)
    for name in (
        "PUSH_SERVICE_KEY",
        "PUSH_JWT_SECRET",
        "PORT",
        "PUSH_RECOVERY_SECONDS",
        "PUSH_REDIS_URL",
        "PUSH_JWT_ALGORITHMS",
        "PUSH_LOG_FORMAT",
    ):
        assert name in text
    assert "short" not in text  # a secret's value is never echoed


def test_no_identity_source_is_a_problem():
    with pytest.raises(ConfigError, match="PUSH_JWT_SECRET"):
        load_settings({"PUSH_SERVICE_KEY": "k" * 20})


def test_callback_mode_needs_no_jwt_secret():
    settings = load_settings({"PUSH_SERVICE_KEY": "k", "AUTH_SERVICE_URL": "http://linen:3000/"})
    assert settings.callback_auth and settings.auth_service_url == "http://linen:3000"


def test_public_key_selects_rs256_and_refuses_hmac_algorithms(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    path = tmp_path / "key.pem"
    path.write_bytes(pem)
    settings = load_settings({"PUSH_SERVICE_KEY": "k", "PUSH_JWT_PUBLIC_KEY": str(path)})
    assert settings.jwt_algorithms == ("RS256",) and settings.jwt_public_key == pem.decode()
    with pytest.raises(ConfigError, match="PUSH_JWT_ALGORITHMS"):
        load_settings({"PUSH_SERVICE_KEY": "k", "PUSH_JWT_PUBLIC_KEY": str(path), "PUSH_JWT_ALGORITHMS": "HS256"})
    with pytest.raises(ConfigError, match="PUSH_JWT_PUBLIC_KEY"):
        load_settings({"PUSH_SERVICE_KEY": "k", "PUSH_JWT_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----\ngarbage"})


def test_dev_mints_what_is_missing_and_says_so():
    settings = load_settings({}, dev=True)
    assert settings.service_key == DEV_SERVICE_KEY and len(settings.jwt_secret or "") >= 32
    assert settings.host == "127.0.0.1" and len(settings.dev_notes) == 2


def test_cors_origins_list():
    settings = load_settings({**GOOD, "PUSH_CORS_ORIGINS": "https://linen.dev, http://localhost:3000"})
    assert settings.cors_origins == ("https://linen.dev", "http://localhost:3000")


def test_entry_point_exits_2_listing_problems():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PUSH_", "AUTH_SERVICE"))}
    env["PUSH_JWT_SECRET"] = "too-short-secret"
    result = subprocess.run([sys.executable, "-m", "sio_push"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "PUSH_SERVICE_KEY" in result.stderr and "PUSH_JWT_SECRET" in result.stderr
    assert "too-short-secret" not in result.stderr
