"""Retry confirms its summary against the run's journal (review item 2): a summary edited to
name another pool, input (so other users and values) or mapping is refused before the input
is opened or anything is written; the input is never opened with the summary's profile."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from test_guard import fake_users, finished_with_failures, write_input

from batch.cli import main
from batch.commands.run import Job
from batch.errors import UsageError
from batch.record.report import summary_path


def edit_summary(report: Path, **changes: Any) -> Path:
    spath = summary_path(report)
    summary = json.loads(spath.read_text())
    settings = changes.pop("settings", {})
    summary["settings"].update(settings)
    summary.update(changes)
    spath.write_text(json.dumps(summary))
    return spath


@pytest.mark.parametrize("edit", ["pool", "input", "mapping", "empty", "sha"])
def test_a_summary_its_journal_does_not_vouch_for_is_refused(
    tmp_path: Path, edit: str, capsys: Any
) -> None:
    # GIVEN a finished run with failed rows, and a summary edited after it
    report = finished_with_failures(tmp_path)
    other = write_input(tmp_path / "evil.csv", 10)
    other.write_text(other.read_text().replace("k0000", "x0000"))
    sha = hashlib.sha256(other.read_bytes()).hexdigest()
    changes: dict[str, Any] = {
        "pool": {"settings": {"user_pool_id": "us-east-1_other"}},
        "input": {"settings": {"input": str(other)}, "input": str(other), "input_sha256": sha},
        "mapping": {"settings": {"columns": {"tier": "email"}}},
        "empty": {"settings": {"empty": "clear"}},
        "sha": {"input_sha256": sha},
    }[edit]
    spath = edit_summary(report, **changes)
    # WHEN it is retried THEN it is refused, naming the summary, before anything is written
    with pytest.raises(UsageError, match=str(spath).replace(".", r"\.") + ": changed after"):
        from batch.commands.retry import retry_config

        retry_config(str(report), None, {})
    assert main(["retry", str(report), "--yes", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(spath) in err[0]
    assert not (tmp_path / "out.retry1.csv").exists()


def test_a_summary_with_no_journal_is_refused(tmp_path: Path) -> None:
    from batch.commands.retry import retry_config

    report = finished_with_failures(tmp_path)
    (tmp_path / "out.csv.journal").unlink()
    with pytest.raises(UsageError, match="journal .* is missing"):
        retry_config(str(report), None, {})


def test_the_input_is_never_opened_with_the_summarys_profile(tmp_path: Path) -> None:
    from batch.commands import retry

    # GIVEN a summary naming a profile (as a run given --profile would)
    report = finished_with_failures(tmp_path)
    edit_summary(report, settings={"profile": "prod-admin"})
    seen: list[Any] = []
    real = retry.open_input

    def spy(path: str, **kw: Any) -> Any:
        seen.append(kw.get("profile"))
        return real(path, **kw)

    retry.open_input = spy  # type: ignore[assignment]
    try:
        retry.retry_config(str(report), None, {})
        retry.retry_config(str(report), None, {"profile": "ops"})
    finally:
        retry.open_input = real  # type: ignore[assignment]
    # THEN the input was opened with the retry's own profile only
    assert seen == [None, "ops"]


def test_a_retry_of_a_retry_is_confirmed_too(tmp_path: Path) -> None:
    from batch.commands.retry import retry_config

    # GIVEN a retry that failed again (its journal's fingerprint holds its --rows)
    report = finished_with_failures(tmp_path)
    first = retry_config(str(report), None, {"confirm": False})
    fake = fake_users(10)
    del fake.users["k00003"]
    assert Job(first, gateway=fake).run().exit_code == 1  # type: ignore[arg-type]
    # WHEN that retry is retried THEN its summary is vouched for by its journal
    again = retry_config(first.report, None, {})
    assert again.rows == first.rows
