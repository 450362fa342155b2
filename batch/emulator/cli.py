"""The `emulator` command line: its options, running until SIGINT / SIGTERM, the ready file.

A thin shell over `batch.emulator.api`; `cognito-batch emulator` and `python -m batch.emulator`
both end up in `run_from_args`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from batch.emulator.api import DEFAULT_CUSTOM_SCHEMA, Emulator
from batch.emulator.front import EmulatorSettings
from batch.emulator.rules import DEFAULT_QUOTAS
from batch.emulator.server import EmulatorError

_QUOTA_ALIASES = {
    "update": "UserUpdate", "read": "UserRead", "list": "UserList",
    "poolread": "UserPoolRead", "create": "UserCreation",
    **{category.lower(): category for category in DEFAULT_QUOTAS},
}


def _quota(text: str) -> tuple[str, float | None]:
    name, sep, rate = text.partition("=")
    category = _QUOTA_ALIASES.get(name.strip().lower())
    if not sep or category is None:
        known = ", ".join(sorted(DEFAULT_QUOTAS))
        raise argparse.ArgumentTypeError(f"expected CATEGORY=RATE with CATEGORY one of {known}")
    if rate.strip().lower() in ("none", "off", "unlimited"):
        return category, None
    try:
        value = float(rate)
    except ValueError:
        raise argparse.ArgumentTypeError(f"rate {rate!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("rate must be > 0 (or 'off')")
    return category, value


def _neighbour(text: str) -> tuple[str, str]:
    name, sep, schedule = text.partition("=")
    category = _QUOTA_ALIASES.get(name.strip().lower())
    if not sep or category is None:
        raise ValueError(f"--neighbour {text!r}: expected CATEGORY=SCHEDULE")
    return category, schedule


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `emulator` command's options."""
    add = parser.add_argument
    add("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)")
    add(
        "--quota",
        type=_quota,
        action="append",
        default=[],
        metavar="CATEGORY=RATE",
        help="requests/s for a quota category (UserUpdate, UserRead, UserList, UserPoolRead, "
        "UserCreation; 'update=50' for short; RATE 'off' for none); repeatable",
    )
    add("--latency-ms", type=_non_negative, default=0.0, help="added to every Cognito call")
    add("--fault-rate", type=_fraction, default=0.0, help="fraction answered HTTP 500")
    add("--drop-rate", type=_fraction, default=0.0, help="fraction with the connection dropped")
    add("--seed", type=int, default=0, help="seed for faults and drops")
    add(
        "--ceiling",
        action="store_true",
        help="answer AdminUpdateUserAttributes at once, without moto or quota",
    )
    add("--neighbour", action="append", default=[], metavar="CATEGORY=SCHEDULE",
        help="background load from other applications on a category's quota, calls/s: "
        "'UserUpdate=10@20s,30@20s,5@20s,10' (10/s for 20 s, ..., then 10/s); repeatable")
    add("--neighbour-arrivals", choices=["poisson", "paced"], default="poisson",
        help="neighbour calls arrive at random (default) or evenly spaced")
    add("--provisioned-limit", choices=["answer", "deny", "unknown"], default="answer",
        help="GetProvisionedLimit: answer from the quotas (default), deny it, or not know it")
    add("--create-pool", metavar="NAME", help="create a user pool")
    add(
        "--default-schema",
        action="store_true",
        help="give the created pool the test schema (custom:department, custom:level, ...)",
    )
    add("--users", metavar="CSV", help="seed the created pool: username column, then attributes")
    add("--ready-file", metavar="PATH",
        help='write {"endpoint_url", "user_pool_id"} here (atomically) once ready')


def run_from_args(args: argparse.Namespace) -> int:
    """Run the emulator until SIGINT / SIGTERM. 0 on a clean stop, 2 on bad input."""
    if (args.users or args.default_schema) and not args.create_pool:
        print("error: --users and --default-schema need --create-pool", file=sys.stderr)
        return 2
    if args.users and not Path(args.users).is_file():
        print(f"error: no such file: {args.users}", file=sys.stderr)
        return 2
    try:
        settings = EmulatorSettings().updated({
            "quotas": dict(args.quota), "latency_ms": args.latency_ms,
            "fault_rate": args.fault_rate, "drop_rate": args.drop_rate,
            "seed": args.seed, "ceiling": args.ceiling,
            "neighbours": dict(_neighbour(n) for n in args.neighbour),
            "neighbour_arrivals": args.neighbour_arrivals,
            "provisioned_limit": args.provisioned_limit,
        })
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    previous = {sig: signal.signal(sig, _setter(stop)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with Emulator(settings, port=args.port) as emulator:
            pool_id = _prepare(emulator, args)
            if args.ready_file:
                _write_atomically(Path(args.ready_file), {
                    "endpoint_url": emulator.endpoint_url, "user_pool_id": pool_id,
                    "s3_endpoint_url": emulator.s3_endpoint_url,
                })
            print(f"endpoint_url={emulator.endpoint_url}")
            if pool_id:
                print(f"user_pool_id={pool_id}")
            print(f"s3_endpoint_url={emulator.s3_endpoint_url}")
            sys.stdout.flush()
            stop.wait()
    except (OSError, ValueError, EmulatorError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError | EmulatorError) else 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _setter(event: threading.Event) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        event.set()

    return handler


def _prepare(emulator: Emulator, args: argparse.Namespace) -> str | None:
    if not args.create_pool:
        return None
    schema = DEFAULT_CUSTOM_SCHEMA if args.default_schema else ()
    pool_id = emulator.create_pool(args.create_pool, custom_attributes=schema)
    if args.users:
        emulator.seed_users_from_csv(pool_id, args.users)
    return pool_id


def _write_atomically(path: Path, payload: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(payload, handle)
    os.replace(temp, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cognito-batch emulator", description="Run a local Cognito (moto behind a front)."
    )
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))
