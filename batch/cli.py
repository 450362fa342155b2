"""The command line: parse, confirm, run, exit code. A thin shell over ``batch.commands.run``.

Exit codes: 0 every row updated or unchanged; 1 some rows invalid, failed or skipped;
2 usage, configuration, input or fatal Cognito error, or an OS failure (a read-only folder,
a full disk, a path that is a folder): one line, never a traceback; 129 hung up (SIGHUP);
130 interrupted (SIGINT); 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import io
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from batch.commands.run import Job, needs_confirmation
from batch.config import build_config, parse_pairs
from batch.engine.exit_codes import EXIT_FATAL, EXIT_SIGINT
from batch.errors import BatchError
from batch.plan.summary import PlanSummary
from batch.view.logs import LOG_FORMATS, EventLog, route_logging, version
from batch.view.metrics import RunMetrics, split_metrics_flag


def _run_options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("input", nargs="?", help="CSV or Parquet file of users and attributes")
    add("--job", help="job file (TOML); flags override it")
    add("--user-pool-id", dest="user_pool_id")
    add("--report", help="report path: .csv, .jsonl or .parquet (default reports/INPUT.report.csv)")
    add("--html", help="also write the run's one-file HTML report here (needs the html extra)")
    add("--checkpoint-seconds", dest="checkpoint_seconds", type=float, metavar="SECONDS",
        help="with an s3:// report: copy the journal to S3 this often (default 5)")
    add("--lease-seconds", dest="lease_seconds", type=float, metavar="SECONDS",
        help="with an s3:// report: a killed run's lease expires after this (default 30)")
    add("--rate", help="calls per second (25), a share of the enforced quota (80%%), or 'auto'; "
        "default: the part of the quota other applications leave, politely")
    add("--max-rate", dest="max_rate", type=float, help="with --rate auto: never above this")
    add(
        "--workers",
        type=int,
        help="most calls in flight (default 512, up to 1024; fewer are used when the "
        "rate and latency need fewer)",
    )
    add("--max-attempts", dest="max_attempts", type=int, help="calls per row at most (default 8)")
    add(
        "--give-up-after",
        dest="give_up_after",
        type=float,
        metavar="SECONDS",
        help="stop the job when no call has succeeded for this long while the endpoint "
        "fails (connection errors, timeouts, 5xx; default 60, 0: never)",
    )
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
    add(
        "--no-undo",
        dest="undo",
        action="store_const",
        const=False,
        help="do not record before-images (REPORT.undo.jsonl): the run cannot be undone",
    )
    add(
        "--undo",
        dest="undo",
        action="store_const",
        const=True,
        help="record before-images also against the local emulator (on by default for a "
        "real pool)",
    )
    _sync_options(parser)
    _incremental_options(parser)
    _max_failures(parser)
    add("--region")
    add("--profile")
    add("--endpoint-url", dest="endpoint_url")
    add("--yes", "-y", dest="yes", action="store_true", help="do not ask for confirmation")
    add("--shard", help="K/N: only the rows whose user key hashes to shard K of N (from 0); "
        "auto or auto/N: K (and N) from AWS_BATCH_JOB_ARRAY_INDEX/_SIZE or JOB_COMPLETION_INDEX")
    add("--log-format", dest="log_format", choices=LOG_FORMATS,
        help="stderr as text lines (default) or one JSON object per line")
    add("--metrics", nargs="+", metavar="KIND",
        help="'emf': CloudWatch EMF records on stdout; 'prometheus-textfile PATH': a "
        "node_exporter textfile, written when the run ends")
    add(
        "--quiet",
        "-q",
        dest="quiet",
        action="store_const",
        const=True,
        help="no progress or summary on stderr",
    )


def _sync_options(parser: argparse.ArgumentParser) -> None:
    """The whole sync's flags (issue 21; docs/sync.md)."""
    add = parser.add_argument
    add("--create-missing", dest="create_missing", action="store_const", const=True,
        help="create a row's user when it does not exist (AdminCreateUser, no message sent)")
    add("--invite", action="store_const", const=True,
        help="with --create-missing: let Cognito send its invitation")
    add("--disable-missing", dest="disable_missing", action="store_const", const=True,
        help="the input is the whole population: disable pool users it lacks")
    add("--max-disable", dest="max_disable", metavar="N|P%",
        help="with --disable-missing: refuse, before any write, to disable more than this "
        "(default 10%% of the pool's users)")
    add("--manage-groups", dest="manage_groups", metavar="A,B,...",
        type=lambda text: tuple(name.strip() for name in text.split(",")),
        help="the groups the 'groups' column may add and remove (default: every group it "
        "names); no other group is touched")
    add("--no-alias-check", dest="alias_check", action="store_const", const=False,
        help="skip the AliasConflict check of email/phone_number/preferred_username "
        "(refused with --mark-verified)")


def _incremental_options(parser: argparse.ArgumentParser) -> None:
    """Incremental runs (issue 22; docs/incremental.md)."""
    add = parser.add_argument
    add("--incremental", action="store_const", const=True,
        help="send only the rows whose desired state changed since the last finished run on "
        "this report (its REPORT.state.parquet), and those that did not succeed then")
    add("--verify", metavar="N|P%",
        help="with --incremental: read back this many (or this share) of the unchanged users, "
        "chosen at random, and fix the drift found")


def _max_failures(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-failures",
        dest="max_failures",
        metavar="N|P%",
        help="stop (exit 2) once more rows fail than this: a number, a percentage of the rows "
        "decided, auto (default: more than 50 and 10%%) or none",
    )


def _connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--region")
    parser.add_argument("--profile")
    parser.add_argument("--endpoint-url", dest="endpoint_url")
    parser.add_argument("--quiet", "-q", dest="quiet", action="store_const", const=True,
                        help="no progress or summary on stderr")


def _undo_options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("from_report", metavar="REPORT", help="the report of the run to undo")
    add("--yes", "-y", dest="yes", action="store_true", help="do not ask for confirmation")
    add("--dry-run", dest="dry_run", action="store_const", const=True,
        help="read the users and write the planned report; no write call")
    add("--force", action="store_true",
        help="restore attributes changed again since the run too (no Conflict)")
    add("--report", help="the undo's report (default REPORT with .undo before its suffix)")
    add("--user-pool-id", dest="user_pool_id",
        help="the pool to restore; must be the one the run wrote to, which its journal records "
        "(the default); never taken from the undo file")
    add("--rate", help="calls per second (25), a share of the enforced quota (80%%), or "
        "'auto' (default: the run's)")
    add("--workers", type=int)
    add("--max-attempts", dest="max_attempts", type=int)
    add("--give-up-after", dest="give_up_after", type=float, metavar="SECONDS",
        help="stop when the endpoint has not answered for this long (default: the run's)")
    add("--fresh", action="store_const", const=True,
        help="discard an unfinished undo's journal instead of resuming it")
    _max_failures(parser)
    _connection(parser)


def _export_options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("out", metavar="OUT", help="a .csv, .jsonl or .parquet file")
    add("--user-pool-id", dest="user_pool_id", required=True)
    add("--attributes", help="comma-separated attributes (default: every one run can write)")
    add("--filter", help='a ListUsers filter, e.g. \'email ^= "a"\'')
    add("--rate", type=float, default=25.0, help="ListUsers calls per second (default 25)")
    add("--fresh", action="store_true", help="start over instead of resuming")
    add("--sync-columns", action="store_true", dest="sync_columns",
        help="also write the enabled and groups columns a sync reads (docs/sync.md)")
    _connection(parser)


def build_parser(*, with_emulator: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cognito-batch",
        description="Bulk, throttled, resumable attribute updates for Amazon Cognito user pools.",
    )
    parser.add_argument("--version", action="version", version=f"cognito-batch {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="apply a file of attribute updates to a user pool")
    _run_options(run)
    retry = sub.add_parser("retry", help="rerun the failed and skipped rows of an earlier report")
    retry.add_argument("from_report", metavar="REPORT")
    _run_options(retry)
    view = sub.add_parser("report", help="show a run: its summary, or --html for a one-file page")
    view.add_argument("view_report", metavar="REPORT", help="the run's report (.csv/.jsonl/...)")
    view.add_argument("--html", help="write a self-contained HTML page here")
    merge = sub.add_parser("merge", help="assemble one report and summary from a run's shards")
    merge.add_argument("report", metavar="REPORT_OR_FOLDER",
                       help="the --report the shards were given, or the folder holding them")
    merge.add_argument("--log-format", dest="log_format", choices=LOG_FORMATS)
    merge.add_argument("--quiet", "-q", action="store_true")
    undo = sub.add_parser("undo", help="put back what a run changed, from its before-images")
    _undo_options(undo)
    export = sub.add_parser("export", help="write every user's attributes in run's input format")
    _export_options(export)
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
    keys = ("input", "user_pool_id", "report", "rate", "max_rate", "workers",
            "max_attempts", "give_up_after",
            "username_column", "key", "format", "delimiter", "empty", "on_duplicate",
            "mark_verified", "skip_unchanged", "schema_check", "dry_run", "fresh", "region",
            "profile", "endpoint_url", "quiet", "html", "log_format", "shard", "undo",
            "max_failures", "checkpoint_seconds", "lease_seconds", "create_missing", "invite",
            "disable_missing", "max_disable", "manage_groups", "alias_check",
            "incremental", "verify")
    out = {k: getattr(args, k, None) for k in keys}
    out["metrics"] = _metrics_flag(args, out)
    out["client_metadata"] = parse_pairs(getattr(args, "client_metadata", None),
                                         what="--client-metadata")
    if args.yes:
        out["confirm"] = False
    return out


def _metrics_flag(args: argparse.Namespace, out: dict[str, Any]) -> tuple[str, ...] | None:
    spec, rest = split_metrics_flag(getattr(args, "metrics", None) or ())
    if rest and out.get("input") is None and len(rest) == 1:  # argparse's nargs="+" took INPUT
        out["input"] = rest[0]
    elif rest:
        raise BatchError(f"--metrics: unexpected {rest[0]!r}")
    return spec or None


def _ask(plan: PlanSummary, *, log: EventLog | None = None) -> bool:
    if log is None or not log.json:  # in JSON mode the job's plan event has said it
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


def _merge(args: argparse.Namespace, log: EventLog) -> int:
    from batch.commands.merge import merge_target
    from batch.record.summary import format_summary

    code, summary, _ = merge_target(args.report)
    if not args.quiet:
        log.summary(summary, format_summary(summary), exit_code=code, shards=summary["shards"])
    return code


def _log_format(argv: Sequence[str]) -> str:
    """The --log-format asked for, read before parsing so a usage error obeys it too."""
    for i, arg in enumerate(argv):
        if arg.startswith("--log-format="):
            value = arg.partition("=")[2]
        elif arg == "--log-format" and i + 1 < len(argv):
            value = argv[i + 1]
        else:
            continue
        return value if value in LOG_FORMATS else "text"
    return "text"


@contextlib.contextmanager
def _usage_errors(log: EventLog) -> Iterator[None]:
    """argparse writes its usage error itself; in JSON mode catch it and say it as an event."""
    if not log.json:
        yield
        return
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            yield
    except SystemExit as exc:
        lines = captured.getvalue().strip().splitlines()
        if exc.code not in (0, None):
            log.error(lines[-1] if lines else "bad usage", exit_code=EXIT_FATAL, kind="UsageError")
        elif lines:
            sys.stdout.write(captured.getvalue())
        raise


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="cognito-batch: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(with_emulator="emulator" in argv or "-h" in argv or "--help" in argv)
    log = EventLog(sys.stderr, format=_log_format(argv))
    route_logging(log)
    try:
        with _usage_errors(log):
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
        if args.command == "report":
            from batch.record.guard import check_html_target
            from batch.view.html_report import report_command

            if args.html:
                check_html_target(Path(args.html), Path(args.view_report))
            return report_command(args.view_report, html=args.html)
        if args.command == "merge":
            return _merge(args, log)
        if args.command == "export":
            return _export(args)
        if args.command == "undo" and args.from_report[:5].lower() == "s3://":
            from batch.commands.undo_s3 import undo_in_s3

            return undo_in_s3(args.from_report, _overrides(args), force=args.force,
                              confirm_for=lambda c: _ask if needs_confirmation(c) else None)
        if args.command == "undo":
            from batch.commands.undo import UndoJob, undo_config

            config, _ = undo_config(args.from_report, _overrides(args))
            confirm = _ask if needs_confirmation(config) else None
            undo = UndoJob(config, force=args.force, confirm=confirm, handle_signals=True,
                           of=Path(args.from_report))
            return undo.run().exit_code
        if args.command == "retry":
            from batch.commands.retry import retry_config

            config = retry_config(args.from_report, args.job, _overrides(args))
        else:
            config = build_config(args.job, _overrides(args))
        confirm = functools.partial(_ask, log=log) if needs_confirmation(config) else None
        metrics = RunMetrics.of(config, job_file=args.job)
        result = Job(config, confirm=confirm, handle_signals=True,
                     on_progress=metrics.tick if metrics is not None else None).run()
        if metrics is not None:
            metrics.finish(result)
        return result.exit_code
    except BatchError as exc:
        log.error(str(exc), exit_code=EXIT_FATAL, kind=type(exc).__name__)
        return EXIT_FATAL
    except KeyboardInterrupt:
        log.warning("interrupted", exit_code=EXIT_SIGINT)
        return EXIT_SIGINT
    except BrokenPipeError:
        return EXIT_FATAL
    except OSError as exc:
        sys.stderr.write(f"cognito-batch: error: {os_error(exc)}\n")
        return EXIT_FATAL


#: What a rerun resumes from, said after an OS failure: each command its own.
RESUMES_FROM_JOURNAL = "it resumes from the journal, so no row is lost"
RESUMES_FROM_CHECKPOINT = "the export resumes from its checkpoint"


def os_error(exc: OSError, resumes: str = RESUMES_FROM_JOURNAL) -> str:
    """One line for an OS failure: the file, the system's words, and what is safe to do.
    (Every result is in the journal before the report, so a rerun resumes without loss.)"""
    where = f"{exc.filename}: " if exc.filename else ""
    what = exc.strerror or str(exc) or type(exc).__name__
    name = errno.errorcode.get(exc.errno or 0, "")
    return (f"{where}{what}{f' ({name})' if name else ''}; rerun the same command once this "
            f"is fixed: {resumes}")


def _export(args: argparse.Namespace) -> int:

    from batch.cognito import CognitoGateway, ConnectionSettings
    from batch.commands.export import Exporter, ExportSettings
    from batch.record.guard import check_export_target

    if args.rate <= 0:
        raise BatchError("--rate must be above 0")
    check_export_target(Path(args.out), fresh=args.fresh)
    settings = ExportSettings(
        user_pool_id=args.user_pool_id, out=Path(args.out),
        attributes=tuple(a for a in (args.attributes or "").split(",") if a.strip()),
        filter=args.filter or "", list_rate=args.rate, fresh=args.fresh,
        quiet=bool(args.quiet), sync_columns=bool(args.sync_columns),
    )
    gateway = CognitoGateway(ConnectionSettings(region=args.region, profile=args.profile,
                                                endpoint_url=args.endpoint_url))
    try:
        result = Exporter(settings, gateway).run()
    except OSError as exc:  # an export has no journal: say what it resumes from
        sys.stderr.write(f"cognito-batch: error: {os_error(exc, RESUMES_FROM_CHECKPOINT)}\n")
        return EXIT_FATAL
    if not args.quiet:
        sys.stderr.write(f"cognito-batch: exported {result.users} users ({result.pages} pages) "
                         f"to {result.path} in {result.duration_s:.1f}s\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
