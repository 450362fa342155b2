"""Shared fixtures: a fake AWS environment, one local Cognito emulator per session, pools."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import pytest

from batch.emulator import DEFAULT_CUSTOM_SCHEMA, Emulator, EmulatorSettings

_FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    # Nothing may fall back to a developer's profile, config files or the instance metadata.
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",
}
_REAL_AWS = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")

PoolFactory = Callable[..., str]


@pytest.fixture(scope="session", autouse=True)
def fake_aws_env() -> Iterator[None]:
    """Every test runs with dummy credentials, so no test can reach a real account."""
    with pytest.MonkeyPatch.context() as patch:
        for name in _REAL_AWS:
            patch.delenv(name, raising=False)
        for name, value in _FAKE_AWS.items():
            patch.setenv(name, value)
        yield


@contextlib.contextmanager
def _pool_key_imported_once() -> Iterator[None]:
    """moto gives every new pool the same private key (its jwks-private.json) and imports it
    anew each time: recovering the RSA primes costs ~0.15 s of CPU a pool, 20 s a session of
    ~130 pools. Each pool still gets that key, imported once."""
    try:
        from moto.cognitoidp import models

        rsa_key = models.jwk.RSAKey
        original = rsa_key.import_key.__func__
    except (ImportError, AttributeError):  # a moto that does it otherwise: no shortcut
        yield
        return
    imported: dict[str, Any] = {}

    def import_key(cls: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs or not isinstance(value, dict):
            return original(cls, value, *args, **kwargs)
        text = json.dumps(value, sort_keys=True)
        if text not in imported:
            imported[text] = original(cls, value)
        return imported[text]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rsa_key, "import_key", classmethod(import_key))
        yield


@pytest.fixture(scope="session")
def emulator(fake_aws_env: None) -> Iterator[Emulator]:
    """One in-process emulator for the whole session (with pytest-xdist: one per worker, each
    on its own free ports); prefer `clean_emulator` in tests."""
    with _pool_key_imported_once(), Emulator(EmulatorSettings()) as running:
        yield running


@pytest.fixture
def clean_emulator(emulator: Emulator) -> Emulator:
    """The session emulator with default settings, zeroed stats and no injections."""
    emulator.configure(defaults=True)
    emulator.reset()
    return emulator


@pytest.fixture(autouse=True)
def _emulator_starts_clean(request: pytest.FixtureRequest) -> None:
    # Tests that take the session emulator directly get the same clean start, whatever ran before.
    if "emulator" in request.fixturenames:
        request.getfixturevalue("clean_emulator")


_pool_numbers = itertools.count(1)


@pytest.fixture
def make_pool(clean_emulator: Emulator, request: pytest.FixtureRequest) -> PoolFactory:
    """Factory: a fresh pool with DEFAULT_CUSTOM_SCHEMA (and optional users); returns its id.

    `make_pool(users=[{"username": "alice", "email": "a@example.com"}], auto_verified=[...])`;
    other keyword arguments go to `Emulator.create_pool`.
    """

    def factory(
        *, users: Iterable[Mapping[str, str]] = (), name: str | None = None, **options: Any
    ) -> str:
        options.setdefault("custom_attributes", DEFAULT_CUSTOM_SCHEMA)
        label = re.sub(r"[^\w-]+", "-", request.node.name)[:40]
        pool_name = name or f"{label}-{next(_pool_numbers)}"
        pool_id = clean_emulator.create_pool(pool_name, **options)
        clean_emulator.seed_users(pool_id, users)
        return pool_id

    return factory


@pytest.fixture(scope="session")
def cognito_client(emulator: Emulator) -> Any:
    """A boto3 cognito-idp client on the emulator, botocore retries pinned to one attempt."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "total_max_attempts": 1}, max_pool_connections=16)
    return boto3.client(
        "cognito-idp", endpoint_url=emulator.endpoint_url, region_name="us-east-1", config=config
    )


@pytest.fixture(scope="session")
def s3_endpoint(emulator: Emulator) -> Iterator[str]:
    """The emulator's S3 (moto over HTTP), found the AWS CLI's way: AWS_ENDPOINT_URL_S3."""
    from batch.store.storage import reset_clients

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL_S3", emulator.s3_endpoint_url)
        reset_clients()
        yield emulator.s3_endpoint_url
    reset_clients()


_bucket_numbers = itertools.count(1)


@pytest.fixture
def make_bucket(s3_endpoint: str, clean_emulator: Emulator) -> Callable[[], str]:
    """Factory: a fresh bucket in the emulator's S3; returns its name."""
    import boto3

    def factory(*, versioned: bool = False) -> str:
        # The process in the name: xdist's workers each count from 1, and two runs on the same
        # s3:// report would share a spool prefix in the one $TMPDIR, where one run's stale-spool
        # cleanup removes the other's live spool (seen as ENOENT on a journal under load).
        name = f"bucket-{os.getpid()}-{next(_bucket_numbers)}"
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=name)
        if versioned:
            client.put_bucket_versioning(
                Bucket=name, VersioningConfiguration={"Status": "Enabled"}
            )
        return name

    return factory


@pytest.fixture
def s3_client(s3_endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", region_name="us-east-1")
