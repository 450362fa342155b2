"""A local Cognito for tests, the demo and benchmarks: moto behind a quota / fault front.

    boto3 client --HTTP--> front (ThreadingHTTPServer) --HTTP keep-alive--> moto cognito-idp app

The front adds what moto lacks: per-category rate quotas and the per-user write limit
(TooManyRequestsException), latency, injected faults and dropped connections, the attribute
rules of `batch.emulator.rules`, verification messages, and admin endpoints under
/_emulator/. Everything binds 127.0.0.1 only.

This module is the emulator's public face; the code lives in (each importing only the ones
before it):

    rules             attribute rules, quota categories, token buckets (pure logic)
    server            HTTP plumbing: moto's app server and client, the front's HTTP server
    front             the front's per-request decisions and stats; EmulatorSettings
    api               Emulator (in process, with setup helpers) and EmulatorAdmin (over HTTP)
    cli               the `emulator` command line
"""

from __future__ import annotations

from batch.emulator.api import DEFAULT_CUSTOM_SCHEMA, Emulator, EmulatorAdmin
from batch.emulator.cli import add_arguments, run_from_args
from batch.emulator.front import EmulatorSettings
from batch.emulator.server import EmulatorError

__all__ = [
    "DEFAULT_CUSTOM_SCHEMA",
    "Emulator",
    "EmulatorAdmin",
    "EmulatorError",
    "EmulatorSettings",
    "add_arguments",
    "run_from_args",
]
