"""``cognito-batch report``: the terminal summary, the one-file HTML page, and that page as a
person sees it in a real headless browser."""

from __future__ import annotations

import csv
import json
import os
import re
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from browser import Browser, find_chromium, problems
from test_e2e import updates, users, write_csv

from batch.cli import main
from batch.record.timeline import Reading, Timeline, timeline_path

SECRET = "s3cr3t-metadata-value"
CHROMIUM = find_chromium()
NO_BROWSER = ("no chromium on PATH (make test installs Debian's chromium when it can: "
              "apt-get install -y chromium)")
needs_browser = pytest.mark.skipif(CHROMIUM is None, reason=NO_BROWSER)


def write_report(path: Path, rows: int, *, failing: int = 0) -> None:
    """A report as a run writes it: the first ``failing`` rows failed, the rest updated."""
    with open(path, "w", encoding="utf-8", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["row", "username", "key", "status", "attempts", "error_code",
                      "error_message", "elapsed_ms"])
        for n in range(1, rows + 1):
            if n <= failing:
                out.writerow([n, f"user{n:05d}", "", "failed", 1, "UserNotFoundException",
                              "User does not exist.", 40])
            else:
                out.writerow([n, f"user{n:05d}", "", "updated", 1, "", "", 40])


def write_timeline(report: Path, seconds: int, *, rows: int, start: float = 1.7e9) -> None:
    timeline = Timeline(identity={"input_sha256": "x"}, rows=rows)
    timeline.start_run(start, Reading())
    for s in range(1, seconds + 1):
        for _ in range(5):
            timeline.record_call(0.030 + 0.001 * (s % 7))
        timeline.sample(start + s, Reading(sent=25 * s, throttled=s // 10, rate=25.0,
                                           in_flight=3, statuses={"updated": 25 * s}))
    timeline.finish(start + seconds, Reading(sent=25 * seconds, statuses={"updated": rows}),
                    complete=True)
    timeline.save(timeline_path(report))


def write_summary(report: Path, rows: int, failing: int, **extra: Any) -> None:
    summary = {
        "rows": rows, "counts": {"updated": rows - failing, "unchanged": 0, "invalid": 0,
                                 "failed": failing, "skipped": 0},
        "errors": {"UserNotFoundException": failing} if failing else {}, "calls": rows,
        "throttles": 3, "faults": 0, "duration_s": 40.0, "achieved_rate": 24.5, "rate": 25.0,
        "rate_final": 25.0, "rate_low": 25.0, "rate_high": 25.0, "stopped": "",
        "report": str(report), "exit_code": 1 if failing else 0,
        "settings": {"rate": "25", "workers": 8, "client_metadata": {"source": SECRET}},
        "pool": {"id": "us-east-1_test", "region": "us-east-1"}, **extra,
    }
    report.with_name(report.name + ".summary.json").write_text(json.dumps(summary))


def finished_run(tmp_path: Path, rows: int = 1000, failing: int = 12, **extra: Any) -> Path:
    report = tmp_path / "night.report.csv"
    write_report(report, rows, failing=failing)
    write_timeline(report, 40, rows=rows)
    write_summary(report, rows, failing, **extra)
    return report


def test_the_page_holds_the_run_and_nothing_it_must_not(tmp_path: Path) -> None:
    # GIVEN a finished run: 1000 rows, 12 failed, a summary with client metadata and a quota
    report = finished_run(tmp_path, quota={"UserUpdate": {"provisioned": 50.0,
                                                          "source": "GetProvisionedLimit"}})
    out = tmp_path / "night.html"
    # WHEN its HTML report is written
    assert main(["report", str(report), "--html", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    # THEN it has the headline, counts by status and error, five charts, the settings
    assert "finished: some rows invalid, failed or skipped" in page
    assert page.count("<svg") == 5
    assert "UserNotFoundException" in page and "988" in page
    assert "quota 50/s (GetProvisionedLimit)" in page
    assert "workers" in page
    # AND sample rows by number and username, at most five of the twelve
    assert "1: user00001" in page and "5: user00005" in page and "6: user00006" not in page
    # AND never a client-metadata value, a script, or a URL to fetch (namespaces only)
    assert SECRET not in page and "source=…" in page
    assert "<script" not in page.lower()
    assert not re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page)
    assert not re.findall(r"url\(\s*['\"]?(?:https?:)?//", page)
    assert set(re.findall(r"https?://[^\"'\s<>]+", page)) <= {
        "http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
    # AND it is owner-only: it names users
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_the_quota_line_says_where_it_came_from(tmp_path: Path) -> None:
    from batch.view.html_report import quota_line

    # GIVEN summaries with a read quota, a fixed rate, and an automatic rate
    # THEN the line is drawn at the best known value, labelled with its source
    assert quota_line({"quota": 40, "rate": 25.0}) == (40.0, "quota 40/s")
    assert quota_line({"rate": 30.0}) == (30.0, "rate asked 30/s (quota not read)")
    assert quota_line({"rate": "auto"}) == (25.0, "Cognito's default quota 25/s (not read)")


def test_the_quota_line_of_a_real_run_shows_the_quota_it_read(
    emulator: Any, make_pool: Any, tmp_path: Path
) -> None:
    from batch.record.summary import RunSummary
    from batch.view.html_report import quota_line

    # GIVEN an emulator enforcing 50 UserUpdate/s (GetProvisionedLimit answers it)
    emulator.configure(quotas={"UserUpdate": 50})
    pool = make_pool(users=users(5))
    source = write_csv(tmp_path / "in.csv", updates(5))
    report = tmp_path / "in.report.csv"
    # WHEN a run writes its summary, and the page's quota line is drawn from it
    assert main(["run", str(source), "--user-pool-id", pool, "--endpoint-url",
                 emulator.endpoint_url, "--report", str(report), "--quiet", "--yes"]) == 0
    summary = RunSummary.of(report)
    # THEN the line is the quota read, not Cognito's default
    assert summary.quota is not None and summary.quota.rate() == 50.0
    assert quota_line(summary.as_json()) == (50.0, "quota 50/s (read from GetProvisionedLimit)")
    # AND an older summary's shape still reads
    old = {"quota": {"UserUpdate": {"provisioned": 40, "source": "GetProvisionedLimit"}}}
    assert quota_line(old) == (40.0, "quota 40/s (GetProvisionedLimit)")


def test_report_without_html_prints_a_finished_run(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a finished run
    report = finished_run(tmp_path)
    # WHEN `report REPORT` runs without --html
    assert main(["report", str(report)]) == 0
    text = capsys.readouterr().out
    # THEN the summary, the timeline and the top error with sample rows are on the terminal
    assert "1000 rows in 40.0s" in text
    assert "timeline: 1 run(s)" in text
    assert "UserNotFoundException ×12: rows 1 (user00001)" in text


def test_report_without_html_prints_an_unfinished_run_from_what_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a run still going: 300 of 1000 rows reported, a timeline, and only the summary of
    # an earlier run (written before this run's files)
    report = tmp_path / "live.report.csv"
    write_summary(report, 5, 0)
    os.utime(report.with_name(report.name + ".summary.json"), (1.6e9, 1.6e9))
    write_report(report, 300, failing=2)
    write_timeline(report, 12, rows=1000)
    # WHEN `report REPORT` runs
    assert main(["report", str(report)]) == 0
    text = capsys.readouterr().out
    # THEN it counts what the report holds so far, against the run's rows
    assert "unfinished run — 300 results so far of 1000 rows: updated 298" in text
    assert "failed 2" in text
    # AND the HTML page of the unfinished run says so too
    out = tmp_path / "live.html"
    assert main(["report", str(report), "--html", str(out)]) == 0
    assert "unfinished" in out.read_text(encoding="utf-8")


def test_a_missing_report_is_one_line_and_exit_2(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN no report at all WHEN asked for it THEN one line naming it, exit 2
    assert main(["report", str(tmp_path / "nothing.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nothing.csv" in err


def test_without_matplotlib_html_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN matplotlib cannot be imported (the html extra is not installed)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    report = finished_run(tmp_path)
    # WHEN `report --html` or `run --html` is asked for
    code = main(["report", str(report), "--html", str(tmp_path / "x.html")])
    run_code = main(["run", str(report), "--user-pool-id", "us-east-1_x", "--html",
                     str(tmp_path / "y.html"), "--endpoint-url", "http://127.0.0.1:9", "--yes",
                     "--report", str(tmp_path / "r.csv"), "--no-schema-check"])
    # THEN each says how to install it, on one line, exit 2, and the run wrote nothing
    err = capsys.readouterr().err
    assert code == 2 and run_code == 2
    assert err.count("pip install 'cognito-batch[html]'") == 2 and err.count("\n") == 2
    assert not (tmp_path / "r.csv").exists() and not (tmp_path / "x.html").exists()


def test_run_with_html_writes_a_page_that_renders_in_a_real_browser(
    emulator: Any, make_pool: Any, tmp_path: Path
) -> None:
    # GIVEN a pool and an input with one user the pool lacks, asked for above the quota
    pool = make_pool(users=users(120))
    rows = updates(120) + [{"username": "ghost01", "tier": "gold", "department": "x"}]
    source = write_csv(tmp_path / "in.csv", rows)
    report, html = tmp_path / "in.report.csv", tmp_path / "in.report.html"
    # WHEN the job runs with --html through the CLI, against the emulator over HTTP
    code = main(["run", str(source), "--user-pool-id", pool, "--endpoint-url",
                 emulator.endpoint_url, "--report", str(report), "--rate", "60",
                 "--html", str(html), "--quiet", "--yes"])
    # THEN the page is there, owner-only, with its charts, the run's counts and the failed row
    assert code == 1  # ghost01 does not exist
    page = html.read_text(encoding="utf-8")
    assert stat.S_IMODE(html.stat().st_mode) == 0o600
    assert page.count("<svg") == 5
    assert "121: ghost01" in page
    summary = json.loads(report.with_name(report.name + ".summary.json").read_text())
    # the quota the run read is drawn (this asserted "rate asked 60/s (quota not read)": the
    # line ignored the quota a real run records, issue 19)
    read = summary["quota"]["rates"]["UserUpdate"]
    assert f"quota {read:g}/s (read from GetProvisionedLimit)" in page
    assert summary["exit_code"] == 1 and f">{summary['counts']['updated']}<" in page
    if CHROMIUM is None:
        pytest.skip(NO_BROWSER)
    # WHEN headless Chromium opens it from disk
    with Browser(CHROMIUM) as browser:
        browser.open(width=1200)
        events = browser.load(html.as_uri())
        charts = browser.evaluate("""JSON.stringify([...document.querySelectorAll('figure svg')]
            .map(s => { const r = s.getBoundingClientRect();
                        const lines = [...s.querySelectorAll('path')]
                          .filter(p => p.getBBox().width > 100).length;
                        return {w: r.width, h: r.height, lines: lines,
                                text: s.textContent}; }))""")
        headline = browser.evaluate("document.querySelector('.outcome').innerText")
    # THEN there is no script error, no console error and no request leaving the file
    assert problems(events) == []
    # AND five charts are laid out at the page's width, each with lines drawn across it
    shown = json.loads(charts)
    assert len(shown) == 5
    assert all(c["w"] > 800 and c["h"] > 150 and c["lines"] >= 1 for c in shown), shown
    assert "calls/s" in shown[0]["text"] and "ms" in shown[2]["text"]
    assert headline.startswith("finished: some rows invalid, failed or skipped")


@needs_browser
def test_the_browser_check_sees_a_script_error_and_a_request(tmp_path: Path) -> None:
    # GIVEN a page with a script error and an image from the network (what the report never has)
    page = tmp_path / "bad.html"
    page.write_text('<html><body><script>notDefined()</script>'
                    '<img src="http://127.0.0.1:9/x.png"></body></html>')
    assert CHROMIUM is not None
    # WHEN the browser opens it
    with Browser(CHROMIUM) as browser:
        browser.open()
        found = problems(browser.load(page.as_uri()))
    # THEN the check reports both: the browser test can fail
    assert any(p.startswith("script error") for p in found), found
    assert any("network request: http://127.0.0.1:9/x.png" in p for p in found), found


def test_a_parquet_report_of_a_resumed_run(tmp_path: Path) -> None:
    from batch.models import RowResult, Status
    from batch.record.report import write_parquet

    # GIVEN a Parquet report, and a timeline of a run that was stopped and resumed
    report = tmp_path / "night.report.parquet"
    write_parquet(report, [RowResult(n, f"user{n}", Status.FAILED if n == 7 else Status.UPDATED,
                                     error_code="AliasExistsException" if n == 7 else "")
                           for n in range(1, 51)])
    timeline = Timeline(identity={"input_sha256": "x"}, rows=50)
    for start in (1.7e9, 1.7e9 + 600):
        timeline.start_run(start, Reading())
        for s in range(1, 6):
            timeline.sample(start + s, Reading(sent=5 * s, rate=25.0, statuses={"updated": 5 * s}))
    timeline.save(timeline_path(report))
    write_summary(report, 50, 1)
    out = tmp_path / "night.html"
    # WHEN its page is written
    assert main(["report", str(report), "--html", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    # THEN the sample row comes from the Parquet file and the resume is marked on the charts
    assert "7: user7" in page and "AliasExistsException" in page
    assert "runs (resumed)" in page and page.count(">resumed<") >= 2
