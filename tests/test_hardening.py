"""An operator's mistake never costs data (issue 14, part B): types, ragged rows, a dead
endpoint, AWS configuration errors, where credentials go, what messages may say, and the
smaller items (the --key hint, --max-rate, formula characters, the emulator's admin API)."""

from __future__ import annotations

import http.client
import io
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fakes import SCHEMA, FakeCognito, ManualClock
from helpers import report_rows

from batch.cli import main
from batch.cognito import (
    EMULATOR_IDENTITY,
    CognitoGateway,
    ConnectionSettings,
    identifies_as_emulator,
)
from batch.commands.run import Job, needs_confirmation
from batch.config import JobConfig, build_config
from batch.emulator import EmulatorAdmin
from batch.emulator.front import IDENTITY
from batch.engine.breaker import EndpointBreaker
from batch.engine.runner import Runner, RunnerSettings
from batch.errors import RowError, TransientError, UsageError
from batch.models import RowResult, Status, UserUpdate
from batch.pace.controllers import FixedRate
from batch.pace.retrying import RetryPolicy
from batch.record.report import neutralise
from batch.view.messages import WITHHELD, report_message, safe_message

POOL = "us-east-1_test"
BASE = {"input": "in.csv", "user_pool_id": POOL}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    assert lines[0].startswith("cognito-batch: error: ")
    return lines[0]


def run_job(tmp_path: Path, source: Path, fake: FakeCognito, **settings: Any) -> Any:
    config = build_config(None, {"input": str(source), "user_pool_id": POOL, "rate": "10000",
                                 "report": str(tmp_path / "out.csv"), "quiet": True,
                                 "confirm": False, **settings})
    stream = io.StringIO()
    result = Job(config, gateway=fake, stream=stream).run()  # type: ignore[arg-type]
    return result, stream.getvalue()


# -- 1. types --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "key", "got", "expected"),
    [
        ('dry_run = "false"', "dry_run", "a string", "a boolean"),
        ('mark_verified = "false"', "mark_verified", "a string", "a boolean"),
        ('confirm = "false"', "confirm", "a string", "a boolean"),
        ('skip_unchanged = "yes"', "skip_unchanged", "a string", "a boolean"),
        ("workers = 4.5", "workers", "a float", "an integer"),
        ('workers = "4"', "workers", "a string", "an integer"),
        ("workers = true", "workers", "a boolean", "an integer"),
        ("input = 5", "input", "an integer", "a string"),
        ('max_row_seconds = "9"', "max_row_seconds", "a string", "a number"),
        ("exclude = [1]", "exclude", "an array holding an integer", "an array of strings"),
        ("columns = { mail = 1 }", "columns", "a table holding an integer", "a table"),
        ("rate = true", "rate", "a boolean", "a string or a number"),
    ],
)
def test_a_wrongly_typed_job_file_setting_is_one_line_naming_key_type_and_expected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, key: str, got: str,
    expected: str,
) -> None:
    # GIVEN a job file with one wrongly typed setting (the input exists: nothing else is wrong)
    source = write(tmp_path / "in.csv", "username,given_name\nu1,Ann\n")
    text = f'user_pool_id = "{POOL}"\n{line}\n'
    if key != "input":
        text = f'input = "{source}"\n' + text
    job = write(tmp_path / "job.toml", text)
    # WHEN it runs through the CLI
    code = main(["run", "--job", str(job), "--quiet"])
    # THEN exit 2 and one line naming the file, the key, the type found and the one expected
    error = one_error_line(capsys.readouterr().err)
    assert code == 2
    assert str(job) in error and f"'{key}'" in error
    assert f"not {got}" in error and f"must be {expected}" in error


def wrong_value(hint: Any) -> Any:
    """A value of the wrong type for an annotation."""
    text = str(hint)
    if hint is bool or text == "bool":
        return "false"
    if hint is int or text == "int":
        return 4.5
    if hint is float or text == "float":
        return "1"
    if hint is str or text == "str":
        return True
    if text.startswith("tuple"):
        return "not-a-list"
    return ["not", "a", "table"]


def test_every_field_of_jobconfig_is_type_checked() -> None:
    # GIVEN every setting JobConfig has (fields added later included), each with a wrong type
    import typing

    hints = typing.get_type_hints(JobConfig)
    for field in fields(JobConfig):
        value = wrong_value(hints[field.name])
        # WHEN it is given / THEN a usage error names that setting
        with pytest.raises(UsageError, match=f"setting '{field.name}' must be"):
            build_config(None, {**BASE, field.name: value})


def test_well_typed_numbers_pass_and_ints_are_floats_where_floats_are_wanted() -> None:
    config = build_config(None, {**BASE, "rate": 12, "max_row_seconds": 30, "workers": 3})
    assert config.fixed_rate == 12.0 and config.workers == 3
    assert isinstance(config.max_row_seconds, float)


# -- 2. ragged CSV rows ----------------------------------------------------------------------


def test_a_ragged_row_is_malformed_holds_no_values_and_counts_as_no_duplicate(
    tmp_path: Path,
) -> None:
    # GIVEN a valid row for ann, a row with a field too many (an unquoted comma in a name)
    # whose shifted fields put "ann" in the username column, and a row with a field too few
    # whose email would land in the username column
    source = write(tmp_path / "in.csv", "name,username,email\n"
                                         "Ann,ann,ann@example.com\n"
                                         "Smith,ann,ann,x@example.com\n"
                                         "Bob,bob@example.com\n")
    fake = FakeCognito({"ann": {}, "bob": {}})
    # WHEN it runs
    result, _ = run_job(tmp_path, source, fake, columns={"name": "given_name"},
                        schema_check=False)
    # THEN the ragged rows are MalformedRow with no username guessed, and ann's row is applied
    rows = report_rows(result.report)
    assert (rows[1]["status"], rows[1]["error_code"]) == ("updated", "")
    for n in (2, 3):
        assert (rows[n]["status"], rows[n]["error_code"], rows[n]["username"]) == (
            "invalid",
            "MalformedRow",
            "",
        )
    assert "example.com" not in result.report.read_text()
    assert fake.calls == [("update", "ann")]


# -- 3. a dead endpoint ----------------------------------------------------------------------


def test_the_breaker_trips_once_after_the_silence_and_any_answer_resets_it() -> None:
    # GIVEN a breaker giving up after 60 s, on a manual clock
    clock = ManualClock()
    breaker = EndpointBreaker(60.0, clock=clock)
    # WHEN calls fail for 59 s / THEN it holds
    for _ in range(10):
        clock.now += 5.9
        assert not breaker.failed("EndpointConnectionError")
    # WHEN an answer comes, then failures for another 59 s / THEN it still holds
    breaker.answered()
    for _ in range(10):
        clock.now += 5.9
        assert not breaker.failed("ReadTimeoutError")
    # WHEN failures go on past 60 s of silence / THEN it trips, exactly once, and says why
    clock.now += 2
    assert breaker.failed("ReadTimeoutError")
    assert not breaker.failed("ReadTimeoutError")
    assert "61 s" in breaker.reason and "rerun" in breaker.reason


def test_the_breaker_needs_several_failures_and_zero_turns_it_off() -> None:
    clock = ManualClock()
    # GIVEN a long quiet spell (a very low rate), then one or two failures
    breaker = EndpointBreaker(60.0, clock=clock)
    clock.now += 600
    assert not breaker.failed("ReadTimeoutError")
    assert not breaker.failed("ReadTimeoutError")
    # THEN only the third failure in a row trips it
    assert breaker.failed("ReadTimeoutError")
    off = EndpointBreaker(0.0, clock=clock)
    clock.now += 600
    assert not any(off.failed("ReadTimeoutError") for _ in range(10))


class DeadWriter:
    """Every call fails as a dropped connection after ``seconds`` on the manual clock; calls
    listed in ``answers`` (1-based) succeed instead."""

    def __init__(
        self, clock: ManualClock, seconds: float, answers: frozenset[int] = frozenset()
    ) -> None:
        self.clock, self.seconds, self.answers = clock, seconds, answers
        self.calls = 0

    def update_user_attributes(self, *args: Any, **kwargs: Any) -> None:
        self.calls += 1
        self.clock.now += self.seconds
        if self.calls not in self.answers:
            raise TransientError("EndpointConnectionError", "Could not connect")

    def delete_user_attributes(self, *args: Any) -> None:  # pragma: no cover - not used
        raise AssertionError


def dead_runner(
    writer: DeadWriter, clock: ManualClock, out: list[RowResult], resolve: Any = None
) -> Runner:
    return Runner(
        writer,  # type: ignore[arg-type]
        # one worker: the calls move the manual clock, so its time line is one call after another
        RunnerSettings(user_pool_id=POOL, workers=1, give_up_after=60.0, per_user_rate=1e6,
                       retry=RetryPolicy(base_backoff=1e-6, max_backoff=1e-6,
                                         max_row_seconds=1e9)),
        controller=FixedRate(1e6), on_result=out.append, clock=clock, resolve=resolve,
    )


def updates(n: int) -> Iterator[UserUpdate]:
    return (UserUpdate(i, f"u{i}", (("given_name", "x"),)) for i in range(1, n + 1))


def test_a_dead_endpoint_stops_the_job_and_skips_every_row_not_applied() -> None:
    # GIVEN an endpoint where every call fails after 5 s (manual clock: nothing sleeps)
    clock = ManualClock()
    writer = DeadWriter(clock, 5.0)
    out: list[RowResult] = []
    runner = dead_runner(writer, clock, out)
    # WHEN 100 rows run with a give-up time of 60 s
    runner.run(updates(100))
    # THEN the 12th failed call (60 s without an answer) stops the job as a fatal error: row 1
    # used its 8 attempts, row 2 is cut short, and the other 98 rows never make a call
    by_row = {r.row: r for r in out}
    assert sorted(by_row) == list(range(1, 101))
    assert writer.calls == 12
    assert runner.fatal is not None and runner.fatal.code == "EndpointUnreachable"
    assert by_row[1].status == Status.FAILED and by_row[1].attempts == 8
    skipped = [r for r in out if r.status == Status.SKIPPED]
    assert len(skipped) == 99
    assert all("gave up" in r.error_message and "resume" in r.error_message for r in skipped)


def test_answers_between_failures_keep_the_job_going() -> None:
    # GIVEN an endpoint that answers every 10th call and fails the others after 5 s each
    clock = ManualClock()
    writer = DeadWriter(clock, 5.0, answers=frozenset(range(10, 1000, 10)))
    out: list[RowResult] = []
    runner = dead_runner(writer, clock, out)
    # WHEN 20 rows run / THEN no 60 s without an answer: the job is not given up
    runner.run(updates(20))
    assert runner.fatal is None and runner.stop_reason == ""
    assert {r.status for r in out} <= {Status.UPDATED, Status.FAILED}


def test_lookups_failing_on_a_dead_endpoint_also_give_up() -> None:
    # GIVEN keyed rows whose every lookup fails after its own retries (30 s each, manual clock)
    clock = ManualClock()
    out: list[RowResult] = []

    def resolve(update: UserUpdate) -> UserUpdate:
        clock.now += 30
        raise TransientError("ReadTimeoutError", "Read timeout")

    writer = DeadWriter(clock, 5.0)
    runner = dead_runner(writer, clock, out, resolve)
    # WHEN 50 rows run
    runner.run(updates(50))
    # THEN the third failed lookup (90 s without an answer) gives up; no write was tried
    statuses = [r.status for r in sorted(out, key=lambda r: r.row)]
    assert statuses == [Status.FAILED] * 3 + [Status.SKIPPED] * 47
    assert writer.calls == 0 and runner.fatal is not None


def test_dead_endpoint_end_to_end_stops_with_exit_2_and_a_rerun_resumes(
    emulator: Any, make_pool: Any, tmp_path: Path
) -> None:
    # GIVEN a pool of 30 users and an emulator that drops every connection once the plan is
    # made (the endpoint goes away after the pre-flight checks)
    pool = make_pool(users=[{"username": f"u{i:02d}"} for i in range(1, 31)])
    source = write(tmp_path / "in.csv", "username,tier\n"
                   + "".join(f"u{i:02d},gold\n" for i in range(1, 31)))
    report = tmp_path / "out.csv"
    settings = {"input": str(source), "user_pool_id": pool, "report": str(report),
                "endpoint_url": emulator.endpoint_url, "rate": "500", "quiet": True,
                "give_up_after": 1.0}

    def go_away(plan: Any) -> bool:
        emulator.configure(drop_rate=1.0)
        return True

    # WHEN the job runs with a give-up time of 1 s
    result = Job(build_config(None, settings), confirm=go_away, stream=io.StringIO()).run()
    # THEN it stops with exit 2; each row is reported once, none applied; the reason is given
    rows = report_rows(report)
    assert result.exit_code == 2
    assert sorted(rows) == list(range(1, 31))
    assert {r["status"] for r in rows.values()} <= {"skipped", "failed"}
    skipped = [r for r in rows.values() if r["status"] == "skipped"]
    assert skipped and all("gave up" in r["error_message"] for r in skipped)
    assert "gave up" in result.summary["stopped"]
    # WHEN the endpoint is back and the same command runs again / THEN it resumes: all applied
    emulator.configure(drop_rate=0.0)
    again = Job(build_config(None, {**settings, "confirm": False}), stream=io.StringIO()).run()
    assert again.exit_code == 0
    assert {r["status"] for r in report_rows(report).values()} == {"updated"}
    assert emulator.get_user_attributes(pool, "u30")["custom:tier"] == "gold"


# -- 4. AWS configuration errors -------------------------------------------------------------

LEAKY = """[profile leaky]
region = us-east-1
credential_process = sh -c "echo SECRET-TOKEN-4242 >&2; exit 1"
"""
BROKEN_JSON = """[profile broken]
region = us-east-1
credential_process = sh -c "echo '{\\"Version\\": 1, \\"AccessKeyId\\": \\"AKIASECRETOUT\\"'"
"""


@pytest.mark.parametrize(
    ("config_text", "args", "fragment"),
    [
        ("[default\nregion = us-east-1\n", [], "cannot be parsed"),
        ("", ["--region", "us east 1"], "--region 'us east 1' is not a region name"),
        ("", ["--endpoint-url", "not a url"], "--endpoint-url 'not a url' is not a URL"),
        ("", ["--endpoint-url", "http://127.0.0.1:99999"], "is not a URL"),
        ("", ["--profile", "nope"], "profile 'nope' not found"),
        (LEAKY, ["--profile", "leaky", "--endpoint-url", "http://127.0.0.1:9"],
         "profile 'leaky' could not be obtained from its custom-process"),
        (BROKEN_JSON, ["--profile", "broken", "--endpoint-url", "http://127.0.0.1:9"],
         "profile 'broken' could not be loaded from its credential_process"),
    ],
    ids=["broken-config", "bad-region", "bad-endpoint", "bad-port", "no-profile",
         "failing-credential-process", "credential-process-not-json"],
)
def test_aws_configuration_errors_are_one_line_exit_2_and_never_show_a_helpers_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    config_text: str, args: list[str], fragment: str,
) -> None:
    # GIVEN an AWS config file (broken, or with a failing credential helper) and a good input
    monkeypatch.setenv("AWS_CONFIG_FILE", str(write(tmp_path / "aws.cfg", config_text)))
    source = write(tmp_path / "in.csv", "username,given_name\nu1,Ann\n")
    # WHEN a run starts
    code = main(["run", str(source), "--user-pool-id", POOL, "--yes", "--quiet", *args])
    # THEN exit 2, one line saying what is wrong, and nothing the helper printed
    error = one_error_line(capsys.readouterr().err)
    assert code == 2
    assert fragment in error
    assert "SECRET" not in error


# -- 5. where credentials go, and when to ask ------------------------------------------------


class Recorder(ThreadingHTTPServer):
    """A loopback endpoint that is not the emulator (a tunnel, another tool): it records each
    request's headers and answers DescribeUserPool."""

    daemon_threads = True

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        super().__init__(("127.0.0.1", 0), _RecorderHandler)
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _RecorderHandler(BaseHTTPRequestHandler):
    server: Recorder

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append(dict(self.headers.items()))
        target = self.headers.get("X-Amz-Target", "")
        body = b"{}"
        if target.endswith("DescribeUserPool"):
            body = json.dumps({"UserPool": {"Id": POOL, "Name": "prod",
                                            "SchemaAttributes": SCHEMA}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    yield server
    server.shutdown()
    server.server_close()


def test_a_loopback_endpoint_gets_dummy_credentials_unless_a_profile_is_given(
    recorder: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN real-looking credentials in the environment, and a profile with others
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREALENVKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "real-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "REAL-SESSION-TOKEN")
    creds = write(
        tmp_path / "credentials",
        "[emu]\naws_access_key_id = AKIAPROFILEKEY\naws_secret_access_key = s\n",
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    # WHEN a call goes to a loopback endpoint without --profile
    CognitoGateway(ConnectionSettings(endpoint_url=recorder.url)).describe_user_pool(POOL)
    # THEN neither the key id nor the session token left the process
    sent = recorder.requests[-1]
    assert "AKIAREALENVKEY" not in sent["Authorization"]
    assert "X-Amz-Security-Token" not in sent
    # WHEN --profile is given explicitly / THEN that profile's credentials are used
    settings = ConnectionSettings(endpoint_url=recorder.url, profile="emu")
    CognitoGateway(settings).describe_user_pool(POOL)
    assert "Credential=AKIAPROFILEKEY/" in recorder.requests[-1]["Authorization"]


def test_only_an_endpoint_that_identifies_as_the_emulator_skips_confirmation(
    emulator: Any, recorder: Recorder
) -> None:
    # GIVEN the emulator, another loopback server, and a port where nothing listens
    # WHEN each is asked who it is / THEN only the emulator is one, as its front says
    assert IDENTITY == EMULATOR_IDENTITY
    assert identifies_as_emulator(emulator.endpoint_url)
    assert not identifies_as_emulator(recorder.url)
    assert not identifies_as_emulator("http://127.0.0.1:9")
    assert not identifies_as_emulator("https://cognito-idp.us-east-1.amazonaws.com")
    config = build_config(None, {**BASE, "endpoint_url": emulator.endpoint_url})
    assert not needs_confirmation(config)
    assert needs_confirmation(build_config(None, {**BASE, "endpoint_url": recorder.url}))


def test_a_localhost_tunnel_is_confirmed_before_any_write(
    recorder: Recorder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a loopback endpoint that is not the emulator (a tunnel to a real pool), no --yes,
    # and no terminal to ask on
    source = write(tmp_path / "in.csv", "username,given_name\nu1,Ann\n")
    # WHEN the job runs
    code = main(["run", str(source), "--user-pool-id", POOL, "--endpoint-url", recorder.url,
                 "--report", str(tmp_path / "out.csv")])
    # THEN it refuses to write without confirmation, and no update was sent
    err = capsys.readouterr().err
    assert code == 2
    assert "without confirmation" in err
    targets = [r.get("X-Amz-Target", "") for r in recorder.requests]
    assert not any(t.endswith("AdminUpdateUserAttributes") for t in targets)


# -- 6. privacy ------------------------------------------------------------------------------

VALUE = "Ada.Lovelace@example.com"


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("InvalidParameterException", f"Invalid email address {VALUE}."),
        ("InvalidParameterException", f"Invalid email address {VALUE.lower()}."),
        ("InvalidParameterException", "Invalid value for given_name: Ada  Lovelace".replace(
            "  ", " ")),
        ("InvalidParameterException", "Invalid email address Ada.Lovel..."),
        ("InvalidParameterException", "user.custom:tier: value ab is not allowed."),
        ("UserLambdaValidationException", "PreUpdate failed with error ada is banned."),
        ("InvalidParameterException", "user.Ada.Lovelace: Attribute does not exist in the "
                                      "schema."),
        ("InvalidParameterException", "Invalid type for parameter UserAttributes[0].Value, "
                                      "value: 12, type: <class 'int'>"),
    ],
    ids=["echo", "case-changed", "collapsed-whitespace", "partial", "two-characters",
         "lambda-text", "value-in-the-name-slot", "botocore-param"],
)
def test_a_message_not_in_a_known_shape_is_replaced_by_our_words(code: str, message: str) -> None:
    # GIVEN an update with personal values and a message that is not a known-safe shape
    update = UserUpdate(1, "u1", (("email", VALUE), ("given_name", "Ada  Lovelace"),
                                  ("custom:tier", "ab")))
    # WHEN it is prepared for the report
    text = report_message(RowError(code, message), update)
    # THEN nothing of Cognito's text is kept: our words, and that it was withheld
    assert WITHHELD in text
    for fragment in ("Ada", "ada", "Lovel", "ab ", "12"):
        assert fragment not in text


@pytest.mark.parametrize(
    "message",
    [
        "User does not exist.",
        "user.custom:level: Number must be at most 10.",
        "Cannot modify the non-mutable attribute custom:employee_id",
        "user.custom:tier: String must be no longer than 16 characters.\n"
        "user.email: Attribute does not exist in the schema.",
        "1 validation error detected: Value at 'userAttributes.1.member.value' failed to "
        "satisfy constraint: Member must have length less than or equal to 2048",
    ],
)
def test_a_known_shape_naming_only_sent_attributes_is_kept(message: str) -> None:
    names = {"custom:level", "custom:employee_id", "custom:tier", "email"}
    code = "UserNotFoundException" if message.startswith("User") else "InvalidParameterException"
    assert safe_message(code, message, names) == "; ".join(message.splitlines())


def test_transport_errors_from_a_real_dropped_connection_keep_botocores_words(
    emulator: Any,
) -> None:
    # GIVEN an endpoint that drops every connection, and one where nothing listens
    emulator.configure(drop_rate=1.0)
    for url in (emulator.endpoint_url, "http://127.0.0.1:9"):
        gateway = CognitoGateway(ConnectionSettings(endpoint_url=url))
        # WHEN a call fails there
        with pytest.raises(TransientError) as info:
            gateway.update_user_attributes(POOL, "u1", [("given_name", "Ada")])
        # THEN botocore's message (it names the endpoint, never a value) is kept
        assert report_message(info.value) == info.value.message
        assert "endpoint URL" in info.value.message


def test_a_headerless_csv_error_names_counts_not_cells(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a CSV without a header row: its first row is a user's email and phone number
    source = write(tmp_path / "in.csv", "ada@example.com,+15550001111,Ada\n"
                                        "bob@example.com,+15550002222,Bob\n")
    # WHEN it runs
    code = main(["run", str(source), "--user-pool-id", POOL, "--yes", "--quiet",
                 "--endpoint-url", "http://127.0.0.1:9"])
    # THEN one line naming the file and the column count, and no cell of the first row
    error = one_error_line(capsys.readouterr().err)
    assert code == 2
    assert "in.csv" in error and "3 columns" in error
    assert "example.com" not in error and "1555" not in error and "Ada" not in error


def test_client_metadata_values_are_not_stored_in_the_summary(tmp_path: Path) -> None:
    # GIVEN a job passing client metadata to Lambda triggers
    source = write(tmp_path / "in.csv", "username,given_name\nu1,Ann\n")
    # WHEN it runs
    result, _ = run_job(tmp_path, source, FakeCognito({"u1": {}}),
                        client_metadata={"source": "hr-sync-SECRET"})
    # THEN the summary names the keys only
    text = (tmp_path / "out.csv.summary.json").read_text()
    assert "hr-sync-SECRET" not in text
    assert json.loads(text)["client_metadata_keys"] == ["source"]


# -- 7. smaller items ------------------------------------------------------------------------


def test_usernames_that_look_like_emails_failing_as_not_found_get_one_key_hint(
    tmp_path: Path,
) -> None:
    # GIVEN a "username" column that holds emails, which are not the pool's usernames
    source = write(tmp_path / "in.csv", "username,given_name\n"
                   + "".join(f"user{i}@example.com,A\n" for i in range(5)))
    # WHEN it runs (keyed by username, the default)
    result, err = run_job(tmp_path, source, FakeCognito({}))
    # THEN every row fails as not found, and one hint (a count, no email) suggests --key email
    assert {r["error_code"] for r in report_rows(result.report).values()} == {
        "UserNotFoundException"
    }
    assert err.count("hint:") == 1 and "--key email" in err and "5 rows" in err
    assert "@" not in err
    assert "--key email" in result.summary["hint"]


def test_max_rate_with_a_fixed_rate_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        build_config(None, {**BASE, "rate": "25", "max_rate": 40.0})
    assert "--max-rate applies only with --rate auto" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        build_config(None, {**BASE, "rate": "auto", "max_rate": 40.0})
    assert caplog.text == ""


def test_an_explicit_username_column_is_kept_with_another_key() -> None:
    # GIVEN --key email with --username-column username given explicitly
    explicit = build_config(None, {**BASE, "key": "email", "username_column": "username"})
    # THEN the column named is the one read; only the default follows the key
    assert explicit.username_column == "username"
    assert build_config(None, {**BASE, "key": "email"}).username_column == "email"
    assert build_config(None, BASE).username_column == "username"


@pytest.mark.parametrize("char", ["＝", "＋", "－", "＠", "﹦", "﹢", "﹣", "﹫"])
def test_full_width_and_small_formula_characters_are_neutralised(char: str) -> None:
    assert neutralise(f"{char}HYPERLINK(1)") == f"'{char}HYPERLINK(1)"


def admin_request(
    port: int, method: str, path: str, body: bytes | None, headers: dict[str, str]
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body, headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def test_the_emulator_admin_api_refuses_foreign_hosts_and_non_json_posts(emulator: Any) -> None:
    port = int(emulator.endpoint_url.rsplit(":", 1)[1])
    change = json.dumps({"latency_ms": 123}).encode()
    # GIVEN a request a browser page could send through DNS rebinding (another Host)
    status, _ = admin_request(port, "POST", "/_emulator/config", change,
                              {"Host": f"evil.example:{port}",
                               "Content-Type": "application/json"})
    assert status == 403
    # AND a cross-site "simple" POST (text/plain needs no CORS preflight)
    status, _ = admin_request(port, "POST", "/_emulator/config", change,
                              {"Content-Type": "text/plain"})
    assert status == 415
    # THEN neither changed anything; the project's own admin client is still let in
    assert EmulatorAdmin(emulator.endpoint_url).configure()["latency_ms"] == 0.0
    status, answer = admin_request(port, "POST", "/_emulator/config",
                                   json.dumps({"latency_ms": 0}).encode(),
                                   {"Content-Type": "application/json"})
    assert (status, answer["latency_ms"]) == (200, 0.0)
    assert admin_request(port, "GET", "/_emulator/identity", None, {})[1] == EMULATOR_IDENTITY
