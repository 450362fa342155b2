"""Every output of every command is guarded (issue 20, items 4 and 14).

The matrix is built from the argument parser: every string-valued option of every command is
a path it *writes*, unless it is listed below as a read or as no path at all, so a new flag
joins the matrix by itself. Each output is crossed with the files a finished run keeps (its
input, report, journal, summary, timeline, before-images); each pair must be refused with
exit 2 and every byte kept. Plus the cases the issue reproduced by name.
-> test_no_output_of_any_command_overwrites_a_kept_file[...]
-> test_run_html_onto_the_input, test_report_html_onto_the_report,
   test_merge_onto_the_shards_input, test_merged_summary_has_its_exit_code
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from helpers import FAST, write_csv

from batch.cli import build_parser, main
from batch.errors import UsageError
from batch.record.layout import RunFiles

#: Options that are read, never written (the matrix's inputs, not its outputs).
READS = {("run", "input"), ("run", "job"), ("retry", "from_report"), ("retry", "input"),
         ("retry", "job"), ("undo", "from_report"), ("report", "view_report")}
#: String options that are no path.
NOT_PATHS = {"user_pool_id", "rate", "region", "profile", "endpoint_url", "username_column",
             "columns", "exclude", "key", "format", "delimiter", "empty", "on_duplicate",
             "client_metadata", "rows", "shard", "max_failures", "rate_algorithm",
             "log_format", "attributes", "filter"}
#: ``someone.csv``: a file no run of this tool wrote (another job's input, a spreadsheet).
KEPT = ["in.csv", "out.csv", "out.csv.journal", "out.csv.summary.json",
        "out.csv.timeline.json", "out.csv.undo.jsonl", "someone.csv"]


def outputs() -> list[tuple[str, str, str]]:
    """(command, dest, flag) of every path-valued output option, read from the parser."""
    found = []
    parser = build_parser(with_emulator=False)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command, child in sub.choices.items():
        for action in child._actions:
            if action.dest in NOT_PATHS or (command, action.dest) in READS:
                continue
            takes_text = action.nargs in (None, "?") and action.type in (None, str)
            if not takes_text or action.choices or action.const is not None:
                continue
            if isinstance(action, argparse._HelpAction | argparse._StoreTrueAction):
                continue
            flag = action.option_strings[0] if action.option_strings else ""
            found.append((command, action.dest, flag))
    return found


def test_the_matrix_finds_the_outputs() -> None:
    # THEN the parser's outputs include the ones the issue names
    names = {(c, f or d) for c, d, f in outputs()}
    assert {("run", "--report"), ("run", "--html"), ("retry", "--report"), ("retry", "--html"),
            ("undo", "--report"), ("report", "--html"), ("merge", "report"),
            ("export", "out")} <= names


@pytest.fixture(scope="module")
def finished_run(emulator: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A run with before-images and one failed row (so that retry has rows to redo)."""
    emulator.configure(quotas=FAST)
    folder = tmp_path_factory.mktemp("finished")
    pool = emulator.create_pool("outputs-matrix", custom_attributes=[
        {"Name": "tier", "AttributeDataType": "String", "Mutable": True}])
    emulator.seed_users(pool, [{"username": f"u{i}", "custom:tier": "a"} for i in range(3)])
    source = write_csv(folder / "in.csv", ["username", "tier"],
                       [["u0", "b"], ["u1", "b"], ["ghost", "b"]])
    report = folder / "out.csv"
    assert main(["run", "--undo", str(source), "--user-pool-id", pool, "--endpoint-url",
                 emulator.endpoint_url, "--report", str(report), "--rate", "500", "--yes",
                 "--quiet", "--html", str(folder / "page.html")]) == 1
    write_csv(folder / "someone.csv", ["username", "email"], [["alice", "a@example.com"]])
    assert all((folder / name).is_file() for name in KEPT)
    return {"folder": folder, "pool": pool, "url": emulator.endpoint_url}


def base_args(command: str, run: dict[str, Any]) -> list[str]:
    folder, pool, url = run["folder"], run["pool"], run["url"]
    connect = ["--endpoint-url", url, "--yes", "--quiet"]
    return {
        "run": ["run", str(folder / "in.csv"), "--user-pool-id", pool, "--rate", "500",
                "--report", str(folder / "other.csv"), *connect],
        "retry": ["retry", str(folder / "out.csv"), *connect],
        "undo": ["undo", str(folder / "out.csv"), *connect],
        "report": ["report", str(folder / "out.csv")],
        "merge": ["merge"],
        "export": ["export", "--user-pool-id", pool, "--endpoint-url", url, "--quiet"],
    }[command]


@pytest.mark.parametrize("kept", KEPT)
@pytest.mark.parametrize(("command", "dest", "flag"), outputs())
def test_no_output_of_any_command_overwrites_a_kept_file(
    finished_run: dict[str, Any], command: str, dest: str, flag: str, kept: str
) -> None:
    if command == "emulator":
        pytest.skip("the emulator writes no file of a run")
    if command == "run" and dest == "report" and kept == "out.csv":
        pytest.skip("a run's own --report again is how it resumes (test_job covers it)")
    folder: Path = finished_run["folder"]
    before = {name: (folder / name).read_bytes() for name in KEPT}
    target = str(folder / kept)
    argv = base_args(command, finished_run)
    argv += [flag, target] if flag else [target]
    # WHEN the command is told to write onto a file the run keeps, THEN exit 2, bytes kept
    assert main(argv) == 2
    assert {name: (folder / name).read_bytes() for name in KEPT} == before


def test_run_html_onto_the_input(emulator: Any, make_pool: Any, tmp_path: Path) -> None:
    # GIVEN an input, WHEN a run is asked for its page there, THEN exit 2 and the input kept
    pool = make_pool(users=[{"username": "u1"}])
    source = write_csv(tmp_path / "users.csv", ["username", "tier"], [["u1", "gold"]])
    kept = source.read_bytes()
    assert main(["run", str(source), "--user-pool-id", pool, "--endpoint-url",
                 emulator.endpoint_url, "--yes", "--quiet", "--report",
                 str(tmp_path / "r.csv"), "--html", str(source)]) == 2
    assert source.read_bytes() == kept
    assert emulator.get_user_attributes(pool, "u1").get("custom:tier") != "gold"


def test_report_html_onto_the_report(finished_run: dict[str, Any]) -> None:
    report = finished_run["folder"] / "out.csv"
    kept = report.read_bytes()
    assert main(["report", str(report), "--html", str(report)]) == 2
    assert report.read_bytes() == kept


def shards(emulator: Any, make_pool: Any, tmp_path: Path, report: str) -> Path:
    pool = make_pool(users=[{"username": f"u{i}"} for i in range(6)])
    source = write_csv(tmp_path / "in.csv", ["username", "tier"],
                       [[f"u{i}", "gold"] for i in range(6)])
    for k in range(2):
        assert main(["run", str(source), "--user-pool-id", pool, "--endpoint-url",
                     emulator.endpoint_url, "--yes", "--quiet", "--rate", "500",
                     "--shard", f"{k}/2", "--report", str(tmp_path / report)]) == 0
    return source


def test_merge_onto_the_shards_input(emulator: Any, make_pool: Any, tmp_path: Path) -> None:
    # GIVEN shards run with --report in.csv (they wrote in.shard-K-of-2.csv)
    source = shards(emulator, make_pool, tmp_path, "in.csv")
    kept = source.read_bytes()
    # WHEN they are merged into in.csv, THEN exit 2 and the input kept
    assert main(["merge", str(source), "--quiet"]) == 2
    assert source.read_bytes() == kept


def test_merged_summary_has_its_exit_code(emulator: Any, make_pool: Any, tmp_path: Path) -> None:
    shards(emulator, make_pool, tmp_path, "out.csv")
    assert main(["merge", str(tmp_path / "out.csv"), "--quiet"]) == 0
    summary = json.loads(RunFiles(tmp_path / "out.csv").summary.read_text())
    assert summary["exit_code"] == 0 and len(summary["shards"]) == 2


def test_outputs_replace_only_what_this_tool_wrote(
    emulator: Any, make_pool: Any, tmp_path: Path
) -> None:
    # GIVEN a finished run with its page, WHEN it runs again onto its own report and page
    pool = make_pool(users=[{"username": "u1"}])
    source = write_csv(tmp_path / "in.csv", ["username", "tier"], [["u1", "gold"]])
    argv = ["run", str(source), "--user-pool-id", pool, "--endpoint-url", emulator.endpoint_url,
            "--yes", "--quiet", "--rate", "500", "--report", str(tmp_path / "r.csv"),
            "--html", str(tmp_path / "r.html")]
    assert main(argv) == 0
    assert main([*argv, "--fresh"]) == 0
    # THEN both are replaced (they are this tool's), and an export over an export with --fresh
    assert main(["export", str(tmp_path / "x.csv"), "--user-pool-id", pool, "--endpoint-url",
                 emulator.endpoint_url, "--quiet"]) == 0
    assert main(["export", str(tmp_path / "x.csv"), "--user-pool-id", pool, "--endpoint-url",
                 emulator.endpoint_url, "--quiet"]) == 2
    assert main(["export", str(tmp_path / "x.csv"), "--user-pool-id", pool, "--endpoint-url",
                 emulator.endpoint_url, "--quiet", "--fresh"]) == 0


def test_a_page_an_earlier_version_wrote_is_replaced(tmp_path: Path) -> None:
    # GIVEN a page as versions before the marker line wrote it (its title says whose it is)
    from batch.record.guard import check_replaceable

    page = tmp_path / "old.html"
    page.write_text('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
                    "<title>cognito-batch report: out.csv</title></head></html>\n")
    # THEN it may be replaced; another tool's page may not
    check_replaceable(page, "html", "--html")
    other = tmp_path / "other.html"
    other.write_text("<!DOCTYPE html><title>Quarterly numbers</title>")
    with pytest.raises(UsageError, match="not a cognito-batch HTML page"):
        check_replaceable(other, "html", "--html")
