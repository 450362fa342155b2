"""``cognito-batch undo s3://b/p/report.csv``: the undo of a run whose report is in S3.

The run's objects are copied, read only, into a private local folder (``S3Report.fetch``: its
journal, compacted or from its checked segments; summary, report, before-images), and the undo
runs on that copy exactly as on a local report. So its before-images are checked against the
run's journal before any call (``record.undo_check``): a record planted with ``s3:PutObject``
in ``report.csv.undo.jsonl``, a value changed, a record dropped or another pool named is
refused before the first write, unless the journal objects are rewritten to match (docs/undo.md).

The undo's own report and summary are put beside the run's (``p/report.undo.csv``), unless
``--report`` names a local file; the local copy is removed however the undo ends. The undo
keeps no journal in S3: rerun after a stop, it starts over, and each restore is checked
against the user as it is then (an earlier undo's restores come out ``unchanged``).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from batch.commands.undo import Confirm, UndoJob, undo_config
from batch.config import JobConfig
from batch.errors import UsageError
from batch.record.layout import RunFiles
from batch.remote.checkpoint import S3Report
from batch.store.files import DIR_MODE


def is_s3(text: str | None) -> bool:
    return bool(text) and str(text)[:5].lower() == "s3://"


def undo_in_s3(
    uri: str,
    overrides: Mapping[str, Any],
    *,
    force: bool,
    confirm_for: Callable[[JobConfig], Confirm | None],
) -> int:
    """Undo the run on the S3 report ``uri`` (module docstring); its exit code."""
    if is_s3(overrides.get("report")):
        raise UsageError("--report s3://...: the undo of an s3:// report puts its report "
                         "beside the run's; give a local --report, or none")
    if overrides.get("dry_run") and not overrides.get("report"):
        raise UsageError("--dry-run with an s3:// report: give a local --report for the "
                         "planned report")
    # Its own private folder, away from the run's spools (a run of this report removes those).
    outer = Path(tempfile.mkdtemp(prefix="cognito-batch-undo-"))
    outer.chmod(DIR_MODE)
    try:
        s3 = S3Report(uri, profile=overrides.get("profile") or None, spool_root=str(outer))
        folder = str(s3.beside(Path("x")))[:-1]

        def shown(path: Path) -> str:
            """A file of the copy as the operator knows it: the object beside the report."""
            return str(s3.beside(path)) if path.parent == s3.spool else str(path)

        try:
            s3.fetch()
            config, _ = undo_config(str(s3.local), overrides)
            job = UndoJob(config, force=force, confirm=confirm_for(config),
                          handle_signals=True, of=s3.local)
            job.pipeline.shown = shown
            # The run's --incremental state in S3 says what it applied; the undo puts that
            # back, so it goes before the first write (the next --incremental is a full run).
            job.forget_state = lambda: s3.store.delete(s3.beside(RunFiles(s3.local).state))
            try:
                return job.run().exit_code
            finally:
                _put_outputs(s3, config)
        except UsageError as exc:  # it names the local copy: name the objects instead
            raise UsageError(str(exc).replace(f"{s3.spool}/", folder)) from None
    finally:
        shutil.rmtree(outer, ignore_errors=True)


def _put_outputs(s3: S3Report, config: JobConfig) -> None:
    """The undo's report, summary and timeline beside the run's report (when in the copy)."""
    report = config.report_path()
    if report.parent != s3.spool:
        return
    files = RunFiles(report)
    for local in (report, files.summary, files.timeline):
        if local.is_file():
            s3.store.put_file(s3.beside(local), local)
