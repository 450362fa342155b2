"""The Python API page's orchestrator examples, run against the emulator with Airflow's,
Dagster's and Prefect's decorators replaced by plain functions, so the page cannot rot."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "python-api.md"
ORCHESTRATORS = re.compile(r"^(from|import) (airflow|dagster|prefect)\b.*$", re.M)


def examples() -> dict[str, str]:
    """The page's Python blocks, by their ``# example: NAME`` first line."""
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    named = {}
    for block in blocks:
        first, _, _ = block.partition("\n")
        assert first.startswith("# example: "), f"a Python block without its name: {first!r}"
        named[first.removeprefix("# example: ").strip()] = block
    return named


def plain(fn: Callable[..., Any] | None = None, **_: Any) -> Any:
    """An orchestrator decorator, bare (``@asset``) or called (``@task(retries=3)``): the
    function itself."""
    return fn if fn is not None else (lambda f: f)


def run_examples() -> dict[str, Any]:
    namespace: dict[str, Any] = {"task": plain, "asset": plain, "flow": plain}
    for name, code in examples().items():
        # The examples import only the tool (and the orchestrator, replaced here).
        rest = ORCHESTRATORS.sub("", code).replace("import batch\n", "")
        assert "import" not in rest.replace("from batch import", ""), name
        exec(compile(ORCHESTRATORS.sub("", code), f"{PAGE.name}:{name}", "exec"), namespace)
    return namespace


def test_the_page_has_an_example_for_each_orchestrator() -> None:
    assert set(examples()) == {"helper", "airflow", "dagster", "prefect"}


def test_the_examples_run_a_job_against_the_emulator(
    emulator: Any, make_pool: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a pool, an input and a job file where the examples expect them
    pool = make_pool(users=[{"username": f"u{i}"} for i in range(1, 6)])
    (tmp_path / "jobs").mkdir()
    (tmp_path / "users.csv").write_text(
        "username,tier\n" + "".join(f"u{i},gold\n" for i in range(1, 6)) + "nobody,gold\n")
    (tmp_path / "jobs" / "nightly-sync.toml").write_text(
        f'input = "../users.csv"\nuser_pool_id = "{pool}"\nregion = "us-east-1"\n'
        'rate = 400\nundo = false\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", emulator.endpoint_url)
    ns = run_examples()
    # WHEN each orchestrator's function is called as the orchestrator would
    outcomes = {
        "airflow": ns["cognito_nightly_sync"]("jobs/nightly-sync.toml", "reports/airflow.csv"),
        "dagster": ns["cognito_users_synced"](),
        "prefect": ns["cognito_nightly"](),
    }
    # THEN each ran the job to its end (exit 1: the user who does not exist)
    for name, outcome in outcomes.items():
        assert outcome["exit_code"] == 1, name
        assert outcome["counts"]["updated"] == 5 and outcome["counts"]["failed"] == 1, name
        assert Path(outcome["report"]).is_file(), name
    assert emulator.get_user_attributes(pool, "u5")["custom:tier"] == "gold"


def test_a_bad_job_file_raises_the_documented_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from batch import BatchError

    monkeypatch.chdir(tmp_path)
    ns = run_examples()
    with pytest.raises(BatchError):
        ns["sync"]("jobs/missing.toml")
