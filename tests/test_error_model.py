"""Every error Cognito can answer is classified, and a broken undo record is refused in a line.

1. For every operation ``batch/cognito.py`` calls, every error shape in botocore's service
   model has an explicit place in our tree (not the "unknown 4xx" default).
   -> test_every_modelled_error_of_our_operations_has_a_class,
      test_operation_not_enabled_is_fatal
2. A malformed before-image record (``before`` missing, a value that is not text ...) is a
   one-line refusal naming the file and line, never a traceback.
   -> test_a_malformed_undo_record_names_file_and_line, test_undo_of_a_malformed_record_exits_2
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore import xform_name
from helpers import FAST, write_csv

from batch import errors
from batch.cli import main
from batch.errors import FatalError, UsageError, classify_code
from batch.record.before_images import iter_records, undo_path

ROOT = Path(__file__).resolve().parent.parent
KNOWN = (errors.THROTTLE_CODES | errors.TRANSIENT_CODES | errors.TRIGGER_CODES
         | errors.ROW_CODES | errors.FATAL_CODES)


def called_operations() -> set[str]:
    """The cognito-idp operations the gateway calls (``self._call("admin_get_user", ...)``)."""
    source = (ROOT / "batch" / "cognito.py").read_text(encoding="utf-8")
    return set(re.findall(r'_call\(\s*"([a-z_]+)"', source))


def test_every_modelled_error_of_our_operations_has_a_class() -> None:
    # GIVEN botocore's model of cognito-idp and the operations the gateway calls
    model = botocore.session.get_session().get_service_model("cognito-idp")
    by_method = {xform_name(name): name for name in model.operation_names}
    called = called_operations()
    assert {"admin_update_user_attributes", "admin_get_user", "list_users"} <= called
    # WHEN every error shape of those operations is looked up in our tree
    missing = sorted(
        f"{by_method[op]}: {shape.name}"
        for op in called
        for shape in model.operation_model(by_method[op]).error_shapes
        if shape.name not in KNOWN
    )
    # THEN none is left to the default
    assert missing == []


def test_operation_not_enabled_is_fatal() -> None:
    assert classify_code("OperationNotEnabledException", 400) is FatalError


def undo_file(path: Path, record: dict[str, Any]) -> Path:
    header = {"undo": 1, "pool": "p", "region": "us-east-1", "input_sha256": "x", "settings": ""}
    good = {"row": 1, "username": "u001", "before": {"custom:tier": "a"},
            "wrote": {"custom:tier": "b"}}
    path.write_text("".join(json.dumps(r) + "\n" for r in (header, good, record)))
    return path


@pytest.mark.parametrize("record", [
    {"row": 2, "username": "u002", "wrote": {"custom:tier": "b"}},
    {"row": 2, "username": "u002", "before": ["a"], "wrote": {"custom:tier": "b"}},
    {"row": 2, "username": "u002", "before": {"custom:tier": 5}, "wrote": {"custom:tier": "b"}},
    {"row": "2", "username": "u002", "before": {}, "wrote": {}},
    {"row": 2, "before": {}, "wrote": {}},
])
def test_a_malformed_undo_record_names_file_and_line(
    tmp_path: Path, record: dict[str, Any]
) -> None:
    # GIVEN an undo file whose third line is not a record this tool writes
    path = undo_file(tmp_path / "r.csv.undo.jsonl", record)
    # WHEN it is read, THEN one UsageError naming the file and line 3 (no value quoted)
    with pytest.raises(UsageError) as caught:
        list(iter_records(path))
    message = str(caught.value)
    assert f"{path}, line 3: not a before-image record" in message
    assert "\n" not in message and "u002" not in message


def test_undo_of_a_malformed_record_exits_2(
    emulator: Any, make_pool: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a run with before-images, then one record's 'before' removed by hand
    emulator.configure(quotas=FAST)
    pool = make_pool(users=[{"username": f"u{i:03d}", "custom:tier": "a"} for i in (1, 2, 3)])
    source = write_csv(tmp_path / "in.csv", ["username", "tier"],
                       [[f"u{i:03d}", "b"] for i in (1, 2, 3)])
    report = tmp_path / "out.csv"
    assert main(["run", "--undo", str(source), "--user-pool-id", pool, "--endpoint-url",
                 emulator.endpoint_url, "--report", str(report), "--rate", "500", "--yes",
                 "--quiet"]) == 0
    path = undo_path(report)
    lines = path.read_text().splitlines(keepends=True)
    second = json.loads(lines[2])
    del second["before"]
    lines[2] = json.dumps(second) + "\n"
    path.write_text("".join(lines))
    capsys.readouterr()
    # WHEN it is undone, THEN exit 2 with one line naming the file and line, no traceback
    code = main(["undo", str(report), "--endpoint-url", emulator.endpoint_url, "--yes",
                 "--quiet", "--rate", "500"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and f"{path}, line 3" in err[0], err
    assert emulator.get_user_attributes(pool, "u002")["custom:tier"] == "b"
