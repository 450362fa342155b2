"""The Python API: one call that runs a job the way ``cognito-batch run`` does.

For schedulers that call tools from Python (Airflow, Dagster, Prefect; ``docs/python-api.md``)
the convention is dbt's ``dbtRunner().invoke(...) -> dbtRunnerResult(success, result, ...)``:
one entry point, a typed result, no exit. Here::

    import batch
    result = batch.run("jobs/nightly-sync.toml", user_pool_id="eu-west-1_AbC", confirm=False)
    result.success, result.exit_code, result.counts, result.report, result.summary.calls

Settings come as the command line's do: a job file, then a dict, then keyword arguments, each
over the one before (the names are the job file's keys, ``batch.config.JobConfig``). The call
raises only the documented error tree (``batch.errors.BatchError`` and its subclasses); a run
that ran returns its result, whatever its exit code. Writing to a real pool asks first, as the
CLI does: pass ``ask`` (a callable shown the plan) or ``confirm=False`` to run unattended.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batch.commands.run import Job, needs_confirmation
from batch.config import build_config
from batch.errors import UsageError
from batch.plan.summary import PlanSummary
from batch.record.layout import RunFiles
from batch.record.summary import RunSummary
from batch.view.metrics import RunMetrics
from batch.view.progress import Tick

__all__ = ["RunResult", "Tick", "run"]


@dataclass(frozen=True, slots=True)
class RunResult:
    """How a run ended. ``success``: every row decided and none failed or invalid (exit 0);
    ``finished``: every row decided (exit 0 or 1), the state a nightly sync can build on."""

    exit_code: int
    summary: RunSummary
    report: Path
    summary_path: Path
    html: Path | None

    @property
    def success(self) -> bool:
        return self.exit_code == 0

    @property
    def finished(self) -> bool:
        return self.exit_code in (0, 1)

    @property
    def counts(self) -> Mapping[str, int]:
        """Rows by status (``updated``, ``unchanged``, ``invalid``, ``failed``, ``skipped``)."""
        return self.summary.counts


def run(
    job: str | Path | None = None,
    settings: Mapping[str, Any] | None = None,
    *,
    on_progress: Callable[[Tick], None] | None = None,
    ask: Callable[[PlanSummary], bool] | None = None,
    **kwargs: Any,
) -> RunResult:
    """Run one job: ``job`` (a TOML job file), ``settings`` and ``kwargs`` (job-file keys).

    ``on_progress`` is called on the progress line's cadence and once at the end with a
    ``Tick`` (counts, never values), from the thread that reported the row: keep it short.
    """
    overrides = {**(settings or {}), **kwargs}
    config = build_config(str(job) if job is not None else None, overrides)
    confirm = None
    if needs_confirmation(config):
        if ask is None:
            raise UsageError(
                f"{config.user_pool_id} is a real pool: pass ask=<a function shown the plan> "
                "to confirm, or confirm=False to write without asking"
            )
        confirm = ask
    metrics = RunMetrics.of(config, job_file=str(job) if job is not None else None)
    listeners = [f for f in (on_progress, metrics.tick if metrics else None) if f is not None]
    job_run = Job(config, confirm=confirm,
                  on_progress=_fan(listeners) if listeners else None)
    result = job_run.run()
    if metrics is not None:
        metrics.finish(result)
    files = RunFiles(result.report)
    html = Path(config.html) if config.html and not config.dry_run else None
    return RunResult(
        exit_code=result.exit_code,
        summary=RunSummary.from_json(result.summary),
        report=result.report,
        summary_path=files.summary,
        html=html if html is not None and html.is_file() else None,
    )


def _fan(listeners: list[Callable[[Tick], None]]) -> Callable[[Tick], None]:
    def each(tick: Tick) -> None:
        for listener in listeners:
            listener(tick)

    return each
