"""The hand-written boto3 loops cognito-batch is compared with, each run as its own process.

    python bench/clients.py sequential INPUT --endpoint-url U --user-pool-id P --out R.json
    python bench/clients.py threaded   INPUT --endpoint-url U --user-pool-id P --out R.json
    python bench/clients.py bare --calls 5000 --endpoint-url U --user-pool-id P --out R.json

- ``sequential``: what a user writes first. A default client (botocore's ``legacy`` retry
  mode, 5 attempts, which does not retry TooManyRequestsException), one call per row; a row
  whose call raised counts as failed.
- ``threaded``: what a user writes instead. 16 threads sharing one client with
  ``retries={"mode": "adaptive", "max_attempts": 10}`` (botocore's CUBIC client-side limiter).
- ``bare``: the cheapest possible loop, for CPU per call at the emulator's ceiling: one client,
  botocore retries pinned to one attempt, the same request every time. ``--calls 0`` measures
  start-up alone (interpreter, boto3 import, client creation).

Input CSV: a ``username`` column, every other column a custom attribute (``custom:`` added).
The result JSON: rows, updated, failed, failed rows' error codes, and the loop's own seconds.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config


def _rows(path: str) -> Iterator[tuple[str, list[dict[str, str]]]]:
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            username = row.pop("username")
            attributes = [
                {"Name": name if name.startswith("custom:") else f"custom:{name}", "Value": value}
                for name, value in row.items()
                if value != ""
            ]
            yield username, attributes


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code") or type(exc).__name__)
    return type(exc).__name__


def sequential(args: argparse.Namespace) -> dict[str, Any]:
    client = boto3.client("cognito-idp", endpoint_url=args.endpoint_url, region_name="us-east-1")
    rows = updated = 0
    errors: Counter[str] = Counter()
    for username, attributes in _rows(args.input):
        rows += 1
        try:
            client.admin_update_user_attributes(
                UserPoolId=args.user_pool_id, Username=username, UserAttributes=attributes
            )
            updated += 1
        except Exception as exc:  # noqa: BLE001 - a user's loop: count it and go on
            errors[_code(exc)] += 1
    return {"rows": rows, "updated": updated, "failed": rows - updated, "errors": dict(errors)}


def threaded(args: argparse.Namespace) -> dict[str, Any]:
    client = boto3.client(
        "cognito-idp", endpoint_url=args.endpoint_url, region_name="us-east-1",
        config=Config(retries={"mode": "adaptive", "max_attempts": 10}),
    )

    def one(item: tuple[str, list[dict[str, str]]]) -> str | None:
        username, attributes = item
        try:
            client.admin_update_user_attributes(
                UserPoolId=args.user_pool_id, Username=username, UserAttributes=attributes
            )
            return None
        except Exception as exc:  # noqa: BLE001 - a user's loop: count it and go on
            return _code(exc)

    rows = updated = 0
    errors: Counter[str] = Counter()
    with ThreadPoolExecutor(max_workers=args.threads) as pool:
        for code in pool.map(one, _rows(args.input)):
            rows += 1
            if code is None:
                updated += 1
            else:
                errors[code] += 1
    return {"rows": rows, "updated": updated, "failed": rows - updated, "errors": dict(errors)}


def bare(args: argparse.Namespace) -> dict[str, Any]:
    client = boto3.client(
        "cognito-idp", endpoint_url=args.endpoint_url, region_name="us-east-1",
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )
    attributes = [{"Name": "custom:tier", "Value": "gold"},
                  {"Name": "custom:department", "Value": "engineering"}]
    updated = 0
    errors: Counter[str] = Counter()
    for i in range(args.calls):
        try:
            client.admin_update_user_attributes(
                UserPoolId=args.user_pool_id, Username=f"user{i:07d}", UserAttributes=attributes
            )
            updated += 1
        except Exception as exc:  # noqa: BLE001
            errors[_code(exc)] += 1
    return {"rows": args.calls, "updated": updated, "failed": args.calls - updated,
            "errors": dict(errors)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["sequential", "threaded", "bare"])
    parser.add_argument("input", nargs="?", help="CSV: username, then attribute columns")
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--user-pool-id", required=True)
    parser.add_argument("--out", required=True, help="where to write the result JSON")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args(argv)
    if not args.endpoint_url.startswith(("http://127.0.0.1:", "http://localhost:")):
        parser.error("the benchmark clients only talk to the local emulator on 127.0.0.1")
    if args.mode != "bare" and not args.input:
        parser.error(f"{args.mode} needs INPUT")
    started = time.perf_counter()
    result = {"sequential": sequential, "threaded": threaded, "bare": bare}[args.mode](args)
    result["loop_s"] = round(time.perf_counter() - started, 3)
    Path(args.out).write_text(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
