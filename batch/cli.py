"""The command line: parse, confirm, run, exit code. A thin shell over ``batch.job``.

Exit codes: 0 every row updated or unchanged; 1 some rows invalid, failed or skipped;
2 usage, configuration, input or fatal Cognito error; 130 interrupted (SIGINT);
143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from batch.config import build_config, parse_pairs
from batch.errors import BatchError
from batch.exit_codes import EXIT_FATAL, EXIT_SIGINT
from batch.job import Job, needs_confirmation
from batch.plan_summary import PlanSummary


def _run_options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("input", nargs="?", help="CSV or Parquet file of users and attributes")
    add("--job", help="job file (TOML); flags override it")
    add("--user-pool-id", dest="user_pool_id")
    add("--report", help="report path: .csv, .jsonl or .parquet (default reports/INPUT.report.csv)")
    add("--rate", help="calls per second (25), a share of the enforced quota (80%%), or 'auto'; "
        "default: the part of the quota other applications leave, politely")
    add("--max-rate", dest="max_rate", type=float, help="with --rate auto: never above this")
    add(
        "--rate-algorithm",
        dest="rate_algorithm",
        choices=["shared", "measured", "aimd", "cubic", "fixed"],
        help=argparse.SUPPRESS,
    )
    add(
        "--workers",
        type=int,
        help="most calls in flight (default 64; fewer are used when the "
        "rate and latency need fewer)",
    )
    add("--max-attempts", dest="max_attempts", type=int, help="calls per row at most (default 8)")
    add("--username-column", dest="username_column", help="column holding the user key")
    add(
        "--key",
        choices=["username", "email", "phone_number", "sub"],
        help="what the key column holds (default username)",
    )
    add("--format", choices=["csv", "parquet"], help="input format (default: by extension)")
    add("--delimiter", help="CSV delimiter (default ,)")
    add(
        "--empty",
        choices=["leave", "delete"],
        help="empty cells: leave the attribute alone (default) or delete it",
    )
    add(
        "--on-duplicate",
        dest="on_duplicate",
        choices=["invalid", "last"],
        help="a user in several rows: all invalid (default) or the last wins",
    )
    add(
        "--client-metadata",
        dest="client_metadata",
        action="append",
        metavar="KEY=VALUE",
        help="passed to Lambda triggers; repeatable",
    )
    add(
        "--mark-verified",
        dest="mark_verified",
        action="store_const",
        const=True,
        help="set email_verified/phone_number_verified=true with a new email/phone: "
        "no verification message is sent",
    )
    add(
        "--skip-unchanged",
        dest="skip_unchanged",
        action="store_const",
        const=True,
        help="read users first and write only attributes that differ",
    )
    add(
        "--no-schema-check",
        dest="schema_check",
        action="store_const",
        const=False,
        help="do not check columns and values against the pool's schema",
    )
    add(
        "--dry-run",
        dest="dry_run",
        action="store_const",
        const=True,
        help="read, map and check everything, write the planned report, call nothing",
    )
    add(
        "--fresh",
        action="store_const",
        const=True,
        help="discard an unfinished run's journal instead of resuming it",
    )
    add("--region")
    add("--profile")
    add("--endpoint-url", dest="endpoint_url")
    add("--yes", "-y", dest="yes", action="store_true", help="do not ask for confirmation")
    add(
        "--quiet",
        "-q",
        dest="quiet",
        action="store_const",
        const=True,
        help="no progress or summary on stderr",
    )


def build_parser(*, with_emulator: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cognito-batch",
        description="Bulk, throttled, resumable attribute updates for Amazon Cognito user pools.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="apply a file of attribute updates to a user pool")
    _run_options(run)
    retry = sub.add_parser("retry", help="rerun the failed and skipped rows of an earlier report")
    retry.add_argument("from_report", metavar="REPORT")
    _run_options(retry)
    emulator = sub.add_parser("emulator", help="run the local Cognito emulator (no AWS account)")
    if not with_emulator:  # its options are only needed to run it (and it imports moto)
        return parser
    try:
        from batch.emulator import add_arguments
    except ImportError:  # the emulator extra (moto) is not installed
        return parser
    add_arguments(emulator)
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("input", "user_pool_id", "report", "rate", "max_rate", "rate_algorithm", "workers",
            "max_attempts",
            "username_column", "key", "format", "delimiter", "empty", "on_duplicate",
            "mark_verified", "skip_unchanged", "schema_check", "dry_run", "fresh", "region",
            "profile", "endpoint_url", "quiet")  # fmt: skip
    out = {k: getattr(args, k, None) for k in keys}
    out["client_metadata"] = parse_pairs(args.client_metadata, what="--client-metadata")
    if args.yes:
        out["confirm"] = False
    return out


def _ask(plan: PlanSummary) -> bool:
    sys.stderr.write(plan.describe() + "\n")
    if not sys.stdin.isatty():
        raise BatchError(
            "refusing to write to a real user pool without confirmation: "
            "run interactively, or pass --yes (confirm = false in a job file)"
        )
    sys.stderr.write("Apply these updates? [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="cognito-batch: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(with_emulator="emulator" in argv or "-h" in argv or "--help" in argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) if exc.code in (0, None) else EXIT_FATAL
    if args.command == "emulator":
        try:
            from batch.emulator import run_from_args
        except ImportError:
            sys.stderr.write(
                "cognito-batch: error: the emulator needs moto: "
                "pip install 'cognito-batch[emulator]'\n"
            )
            return EXIT_FATAL
        return run_from_args(args)
    try:
        if args.command == "retry":
            from batch.retry import retry_config

            config = retry_config(args.from_report, args.job, _overrides(args))
        else:
            config = build_config(args.job, _overrides(args))
        confirm = _ask if needs_confirmation(config) else None
        job = Job(config, confirm=confirm, handle_signals=True)
        return job.run().exit_code
    except BatchError as exc:
        sys.stderr.write(f"cognito-batch: error: {exc}\n")
        return EXIT_FATAL
    except KeyboardInterrupt:
        sys.stderr.write("cognito-batch: interrupted\n")
        return EXIT_SIGINT
    except BrokenPipeError:
        return EXIT_FATAL


if __name__ == "__main__":
    sys.exit(main())
