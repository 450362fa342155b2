"""``cognito-batch merge REPORT``: one report and one summary from the shards of a run.

``REPORT`` is the report path the shards were given (``out.csv``; each wrote
``out.shard-K-of-N.csv`` and its summary), or the folder holding one such family. Merge checks
that every shard 0..N-1 is there with its summary, that they ran over the same input (same
identity) with the same settings, and that no row is in two shards; then it streams the shard
reports, one after the other, into ``REPORT`` (the same format) and writes ``REPORT``'s
summary: counts, errors, calls, throttles and faults summed, the duration the longest shard's
(they run side by side), and each shard's own figures under ``shards``.

Memory: one byte per input row (the row set that proves exactly-once), whatever the report's
size; rows stream through, a Parquet report a record batch at a time. A shard that was
stopped (a signal, a fatal error) is merged with its ``skipped`` rows and named in
``stopped``; rerunning that shard's command resumes it, and merging again replaces the report.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from batch.engine.exit_codes import exit_code
from batch.errors import UsageError
from batch.inputs.shard import SHARD_NAME
from batch.models import RowResult, Status
from batch.record.guard import check_outputs, check_replaceable
from batch.record.layout import RunFiles, summary_path
from batch.record.report import (
    REPORT_SUFFIXES,
    is_report_name,
    open_report,
    report_format,
    write_parquet,
)
from batch.record.report_reader import read_results
from batch.record.summary import RunSummary, achieved_rate, status_counts, write_summary

# A shard's report or its summary (not its journal, checkpoint segments, lease or timeline).
_SHARD_FILE = re.compile(
    r"\.shard-\d+-of-\d+\.(" + "|".join(REPORT_SUFFIXES) + r")(\.summary\.json)?$"
)
_SUMMED = ("calls", "throttles", "faults", "resumed_rows", "read_calls")
_PER_SHARD = ("rows", "counts", "calls", "throttles", "duration_s", "achieved_rate",
              "rate_final", "stopped", "report")
# The settings that change what a run writes (JobConfig.fingerprint's): shards must agree on
# them; how fast, how loud or with which profile each ran may differ.
_SAME = ("user_pool_id", "username_column", "key", "columns", "exclude", "empty",
         "on_duplicate", "mark_verified", "skip_unchanged", "format", "delimiter")


def find_shards(target: Path) -> tuple[Path, list[Path]]:
    """The merged report's path and the shard reports, in shard order, all present."""
    if target.is_dir():
        bases = {SHARD_NAME.sub("", p.stem) + p.suffix for p in target.iterdir()
                 if SHARD_NAME.search(p.stem) and is_report_name(p)}
        if len(bases) != 1:
            names = ", ".join(sorted(bases)) or "none"
            raise UsageError(f"{target}: expected the shard reports of one run here ({names}); "
                             "name the report: cognito-batch merge FOLDER/REPORT.csv")
        target = target / bases.pop()
    found: dict[int, Path] = {}
    counts: set[int] = set()
    for path in target.parent.glob(f"{target.stem}.shard-*-of-*{target.suffix}"):
        match = SHARD_NAME.search(path.stem)
        if match is None or path.stem[: match.start()] != target.stem:
            continue
        index, count = int(match.group(1)), int(match.group(2))
        counts.add(count)
        found[index] = path
    if not found:
        raise UsageError(f"{target}: no shard reports beside it ({target.stem}.shard-K-of-N"
                         f"{target.suffix})")
    if len(counts) != 1:
        raise UsageError(f"{target}: shard reports of different shard counts {sorted(counts)} "
                         "are beside it; remove the stale ones")
    count = counts.pop()
    missing = [k for k in range(count) if k not in found]
    if missing:
        raise UsageError(f"{target}: shard {missing[0]} of {count} has no report yet "
                         f"(missing: {', '.join(map(str, missing))})")
    return target, [found[k] for k in range(count)]


def _summary(report: Path) -> RunSummary:
    path = summary_path(report)
    try:
        summary = RunSummary.load(path)
    except FileNotFoundError:
        raise UsageError(f"{path}: missing; that shard has not finished (rerun it: it resumes)"
                         ) from None
    if summary.dry_run:
        raise UsageError(f"{path}: a dry run's summary; merge the shards of a real run")
    return summary


def merge_target(target: str) -> tuple[int, dict[str, Any], str]:
    """``merge`` of a local report or folder, or of an ``s3://`` report or prefix: the shard
    reports and summaries are copied into a private local folder (streamed: reports hold no
    values, but are the users' names all the same), merged there, and the merged report and
    summary put back beside them."""
    from batch.store.storage import is_s3

    if not is_s3(target):
        code, summary, report = merge(Path(target))
        return code, summary, str(report)
    return _merge_s3(target)


def _merge_s3(target: str) -> tuple[int, dict[str, Any], str]:
    import shutil
    import tempfile

    from batch.store.files import private_dir
    from batch.store.storage import parse, storage_for

    where = parse(target)
    store = storage_for(where)
    folder = target.endswith("/")
    prefix_key = where.key if folder else where.key.rpartition("/")[0] + "/"
    prefix = parse(f"s3://{where.bucket}/{prefix_key.lstrip('/')}")
    private_dir(Path(tempfile.gettempdir()))
    work = Path(tempfile.mkdtemp(prefix="cognito-batch-merge-"))  # 0700
    try:
        found: dict[str, Any] = {}  # the shards' reports and summaries directly under prefix
        for info in store.list(prefix):
            name = info.relative or info.location.name
            if "/" not in name and _SHARD_FILE.search(name):
                found[name] = info
        # Only the named report's shards are copied (a prefix: its one run's), no other run's.
        families = sorted({_family(name) for name in found})
        if folder and len(families) != 1:
            raise UsageError(f"{target}: expected the shard reports of one run here "
                             f"({', '.join(families) or 'none'}); name the report: "
                             f"cognito-batch merge {target}REPORT.csv")
        wanted = families[0] if folder else where.name
        for name, info in found.items():
            if _family(name) != wanted:
                continue
            with store.open_read(info) as source, open(work / name, "wb") as copy:
                shutil.copyfileobj(source, copy, 1 << 20)
        local = work if folder else work / where.name
        code, summary, report = merge(local)
        remote = f"s3://{where.bucket}/{prefix_key}{report.name}"
        store.put_file(parse(remote), report)
        summary = {**summary, "report": remote,
                   "shards": [{**s, "report": f"s3://{where.bucket}/{prefix_key}"
                               f"{Path(str(s.get('report', ''))).name}"}
                              for s in summary.get("shards", [])]}
        write_summary(report, summary)
        store.put_file(parse(remote + ".summary.json"), summary_path(report))
        return code, summary, remote
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _family(name: str) -> str:
    """The report a shard's report or summary belongs to: ``x.shard-0-of-3.csv`` -> ``x.csv``."""
    report = Path(name.removesuffix(".summary.json"))
    return SHARD_NAME.sub("", report.stem) + report.suffix


def merge(target: Path) -> tuple[int, dict[str, Any], Path]:
    """Merge the shards of ``target``; returns the exit code, the summary and the report."""
    report, shards = find_shards(target)
    summaries = [_summary(path) for path in shards]
    _check_same_run(shards, summaries)
    # The merged files never overwrite what the shards read or wrote (``--report in.csv``
    # made the shards ``in.shard-K-of-N.csv``: the merged report would be the input).
    first_input = summaries[0].input
    local_input = Path(first_input) if first_input and "://" not in first_input else None
    files = RunFiles(report)
    check_outputs(local_input, [("merged report", report), ("merged summary", files.summary),
                                ("merge's temporary", files.merging)],
                  [(f"shard {k}'s report", p) for k, p in enumerate(shards)])
    check_replaceable(report, "report", "merge REPORT")
    total = sum(s.rows for s in summaries)
    seen = bytearray()
    counts = dict.fromkeys((s.value for s in Status), 0)
    errors: dict[str, int] = {}

    def results() -> Iterator[RowResult]:
        for path in shards:
            for result in read_results(path):
                if result.row >= len(seen):
                    seen.extend(bytes(result.row + 1 - len(seen) + 4096))
                if seen[result.row]:
                    raise UsageError(f"{path}: row {result.row} is also in another shard's "
                                     "report; the shards did not split one run")
                seen[result.row] = 1
                counts[result.status.value] += 1
                if result.error_code:
                    errors[result.error_code] = errors.get(result.error_code, 0) + 1
                yield result

    tmp = files.merging
    try:
        if report_format(report) == "parquet":
            write_parquet(tmp, results())
        else:
            writer = open_report(tmp)
            try:
                for result in results():
                    writer.write(result)
            finally:
                writer.close()
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    merged_rows = sum(counts.values())
    if merged_rows != total:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"{report}: the shard reports hold {merged_rows} rows, their summaries "
                         f"{total}; rerun the shards to finish them")
    tmp.replace(report)
    code = exit_code(counts, fatal=False)
    summary = _merged_summary(report, shards, summaries, counts, errors, total, code)
    summary.write(report)
    return code, summary.as_json(), report


def _check_same_run(shards: list[Path], summaries: list[RunSummary]) -> None:
    first = summaries[0]
    base = {k: first.settings.get(k) for k in _SAME}
    for path, summary in zip(shards[1:], summaries[1:], strict=True):
        if summary.input_sha256 != first.input_sha256:
            raise UsageError(f"{path}: this shard ran over a different input than {shards[0]}")
        own = {k: summary.settings.get(k) for k in _SAME}
        if own != base:
            diff = sorted(k for k in set(own) | set(base) if own.get(k) != base.get(k))
            raise UsageError(f"{path}: this shard ran with different settings ({diff[0]})")


def _merged_summary(
    report: Path,
    shards: list[Path],
    summaries: list[RunSummary],
    counts: dict[str, int],
    errors: dict[str, int],
    total: int,
    code: int,
) -> RunSummary:
    first = summaries[0]
    duration = max(s.duration_s for s in summaries)
    as_json = [s.as_json() for s in summaries]

    def summed(key: str) -> float:
        return round(sum(float(getattr(s, key) or 0) for s in summaries), 2)

    return RunSummary(
        rows=total, counts=status_counts(counts), errors=dict(sorted(errors.items())),
        calls=sum(s.calls for s in summaries), throttles=sum(s.throttles for s in summaries),
        faults=sum(s.faults for s in summaries),
        resumed_rows=sum(s.resumed_rows for s in summaries),
        read_calls=sum(s.read_calls for s in summaries),
        duration_s=round(duration, 3),
        # Side by side: the rows this attempt of each shard wrote over the longest shard.
        achieved_rate=achieved_rate(round(sum(s.achieved_rate * s.duration_s
                                              for s in summaries)), duration),
        # A label (auto, polite, P%) stays as it is; calls/s per shard add up.
        rate=first.rate if isinstance(first.rate, str) else summed("rate"),
        rate_final=summed("rate_final"), rate_low=summed("rate_low"),
        rate_high=summed("rate_high"),
        stopped=next((s.stopped for s in summaries if s.stopped), None),
        report=str(report), input=first.input, input_sha256=first.input_sha256,
        input_parts=first.input_parts, pool=first.pool,
        settings={k: v for k, v in first.settings.items() if k not in ("shard", "report")},
        shards=[{"shard": s.shard, **{k: j.get(k) for k in _PER_SHARD}, "report": str(p)}
                for p, s, j in zip(shards, summaries, as_json, strict=True)],
        exit_code=code, journal=None,
    )
