"""A summary edited to hold a field of the wrong type (review item 11) reaches no command as
a traceback: ``RunSummary.load`` takes a number's other shape (an int's float), a null as the
default, and refuses anything else with a UsageError naming the file and the field (exit 2).
-> test_a_wrong_type_is_refused_naming_the_field, test_no_command_tracebacks_on_a_wrong_type
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import FAST, write_csv

from batch.cli import main
from batch.errors import UsageError
from batch.record.summary import RunSummary

WRONG = ["zzz", {}, [1], None, True]
COMMANDS = {
    "report": lambda f, url: ["report", str(f / "out.csv")],
    "report --html": lambda f, url: ["report", str(f / "out.csv"), "--html",
                                     str(f / "h.html")],
    "retry --dry-run": lambda f, url: ["retry", str(f / "out.csv"), "--endpoint-url", url,
                                       "--yes", "--quiet", "--dry-run"],
    "undo --dry-run": lambda f, url: ["undo", str(f / "out.csv"), "--endpoint-url", url,
                                      "--yes", "--quiet", "--dry-run", "--report",
                                      str(f / "u.csv")],
}


@pytest.fixture(scope="module")
def finished(emulator: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    emulator.configure(quotas=FAST)
    folder = tmp_path_factory.mktemp("fuzz")
    pool = emulator.create_pool("summary-fuzz")
    emulator.seed_users(pool, [{"username": "u0", "email": "a@x.example"}])
    source = write_csv(folder / "in.csv", ["username", "email"], [["u0", "b@x.example"],
                                                                  ["ghost", "c@x.example"]])
    assert main(["run", "--undo", str(source), "--user-pool-id", pool, "--endpoint-url",
                 emulator.endpoint_url, "--report", str(folder / "out.csv"), "--rate", "500",
                 "--yes", "--quiet"]) == 1
    return folder, emulator.endpoint_url


def test_a_wrong_type_is_refused_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"achieved_rate": "zzz"}))
    with pytest.raises(UsageError, match=f"{path}: .*'achieved_rate'"):
        RunSummary.load(path)
    path.write_text(json.dumps({"calls": 3.0, "achieved_rate": 2, "counts": {"updated": 1.0},
                                "stopped": None, "errors": None}))
    summary = RunSummary.load(path)
    assert (summary.calls, summary.achieved_rate, summary.counts) == (3, 2.0, {"updated": 1})
    assert summary.stopped is None and summary.errors == {}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_no_command_tracebacks_on_a_wrong_type(
    finished: tuple[Path, str], command: str, capsys: Any
) -> None:
    # GIVEN a finished run's summary, each field in turn set to each wrong type
    folder, url = finished
    spath = folder / "out.csv.summary.json"
    original = spath.read_text()
    fields = [*json.loads(original), "settings.rate", "settings.workers", "quota.rates"]
    try:
        for field in fields:
            for value in WRONG:
                data = json.loads(original)
                if "." in field:
                    outer, inner = field.split(".")
                    data[outer][inner] = value
                else:
                    data[field] = value
                spath.write_text(json.dumps(data))
                # WHEN the command reads it THEN it answers, or refuses in one line (exit 2)
                try:
                    code = main(COMMANDS[command](folder, url))
                except Exception as exc:  # noqa: BLE001 - what the test is for
                    pytest.fail(f"{field}={value!r}: {command} raised {exc!r}")
                err = capsys.readouterr().err
                assert code in (0, 1, 2), (field, value, code, err)
                assert "Traceback" not in err
    finally:
        spath.write_text(original)


def _sample(name: str, kind: str) -> Any:
    """A value of the field's declared type that is not its default."""
    if name == "quota":
        from batch.record.summary import Quota

        return Quota({"UserUpdate": 50.0}, source="read from GetProvisionedLimit")
    if name == "rate":
        return "auto"
    if name == "exit_code":
        return 1
    if kind.startswith("dict"):
        return {"read": 3, "held": 2} if name in ("counts", "errors") else {"k": 1}
    if kind.startswith("list"):
        return [{"shard": "1/2"}] if name == "shards" else ["a"]
    if kind.startswith("bool"):
        return True
    if kind.startswith("int"):
        return 7
    if kind.startswith("float"):
        return 2.5
    if kind.startswith("str"):
        return "x"
    return {"k": 1}


def test_every_field_a_run_writes_reads_back_as_written() -> None:
    # GIVEN a summary with every field set to a value of its declared type
    import dataclasses

    values = {f.name: _sample(f.name, str(f.type)) for f in dataclasses.fields(RunSummary)
              if f.name != "extra"}
    written = RunSummary(**values)
    # WHEN it is read back (what report, retry, merge, undo and the HTML page do)
    read = RunSummary.from_json(json.loads(json.dumps(written.as_json())))
    # THEN it is the same summary: no field the pipeline writes is refused as a wrong type
    assert read == written
