"""A tampered undo file cannot aim the undo (issue 20 item 1).

End to end against the emulator over real HTTP: a run with before-images on one pool, a
second pool beside it holding a user the run never touched. The undo file is then edited as
someone who can write the report folder would (not its journal), and each undo must refuse
before its first call: the emulator sees no write (no read either).

1. Five edits: another pool, another user, another attribute, a changed value, a dropped
   record (and an added one) -> test_a_tampered_undo_file_is_refused_before_any_write[...]
2. ``--user-pool-id`` naming another pool than the run's -> refused, no write.
   -> test_the_undo_writes_only_to_the_pool_the_run_wrote_to
3. The untouched file still undoes (the check refuses edits, not undo).
   -> test_a_tampered_undo_file_is_refused_before_any_write (its end)
4. The run's summary gives no profile or client metadata to the undo.
   -> test_the_summary_gives_the_undo_no_profile
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import FAST, write_csv

from batch.cli import main
from batch.record.before_images import undo_path

Edit = Callable[[list[dict[str, Any]], str], list[dict[str, Any]]]


def name(i: int) -> str:
    return f"u{i:03d}"


def calls(emulator: Any, *operations: str) -> int:
    stats = emulator.stats()["operations"]
    return sum(int(stats.get(op, {}).get("calls", 0)) for op in operations)


WRITES = ("AdminUpdateUserAttributes", "AdminDeleteUserAttributes")


@pytest.fixture
def ran(emulator: Any, make_pool: Any, tmp_path: Path) -> dict[str, Any]:
    """A run over 8 users of pool A (tier silver -> gold); pool B holds ``victim``."""
    emulator.configure(quotas=FAST)
    people = [{"username": name(i), "custom:tier": "silver", "email": f"{name(i)}@example.com"}
              for i in range(1, 13)]
    pool = make_pool(users=people, name="tamper-a")
    other = make_pool(users=[{"username": "victim", "email": "victim@example.com",
                              "custom:tier": "basic"}], name="tamper-b")
    source = write_csv(tmp_path / "in.csv", ["username", "tier"],
                       [[name(i), "gold"] for i in range(1, 9)])
    report = tmp_path / "out.csv"
    assert main(["run", "--undo", str(source), "--user-pool-id", pool, "--endpoint-url",
                 emulator.endpoint_url, "--report", str(report), "--rate", "500", "--yes",
                 "--quiet"]) == 0
    return {"pool": pool, "other": other, "report": report, "emulator": emulator}


def undo(ran: dict[str, Any], *extra: str) -> int:
    return int(main(["undo", str(ran["report"]), "--endpoint-url",
                     ran["emulator"].endpoint_url, "--yes", "--quiet", "--rate", "500",
                     *extra]))


def other_pool(lines: list[dict[str, Any]], other: str) -> list[dict[str, Any]]:
    lines[0]["pool"] = other
    lines[1]["username"] = "victim"
    return lines


def other_user(lines: list[dict[str, Any]], other: str) -> list[dict[str, Any]]:
    lines[2]["username"] = name(11)  # in the pool, never in the run's input
    return lines


def other_attribute(lines: list[dict[str, Any]], other: str) -> list[dict[str, Any]]:
    lines[3]["before"]["email"] = "attacker@example.com"
    lines[3]["wrote"]["email"] = f"{lines[3]['username']}@example.com"
    return lines


def changed_value(lines: list[dict[str, Any]], other: str) -> list[dict[str, Any]]:
    lines[4]["before"]["custom:tier"] = "admin"
    return lines


def dropped_record(lines: list[dict[str, Any]], other: str) -> list[dict[str, Any]]:
    del lines[5]
    return lines


def added_record(lines: list[dict[str, Any]], other: str) -> list[dict[str, Any]]:
    lines.insert(-1, {"row": 40, "username": name(12), "before": {"custom:tier": "admin"},
                      "wrote": {"custom:tier": "silver"}})
    return lines


@pytest.mark.parametrize("edit", [other_pool, other_user, other_attribute, changed_value,
                                  dropped_record, added_record])
def test_a_tampered_undo_file_is_refused_before_any_write(
    ran: dict[str, Any], capsys: pytest.CaptureFixture[str], edit: Edit
) -> None:
    # GIVEN the run's undo file edited (the journal beside it untouched)
    emulator, upath = ran["emulator"], undo_path(ran["report"])
    original = upath.read_bytes()
    lines = [json.loads(line) for line in original.splitlines()]
    assert lines[-1] == {"complete": True} and len(lines) == 10
    upath.write_text("".join(json.dumps(x) + "\n" for x in edit(lines, ran["other"])))
    emulator.reset()
    capsys.readouterr()

    # WHEN it is undone
    code = undo(ran)

    # THEN the undo refuses (exit 2) in a line naming the file, before any call at all
    assert code == 2
    assert "changed after the run wrote it" in capsys.readouterr().err
    assert calls(emulator, *WRITES) == 0
    assert calls(emulator, "AdminGetUser", "DescribeUserPool") == 0
    assert emulator.get_user_attributes(ran["other"], "victim")["custom:tier"] == "basic"

    # AND the file as the run wrote it still undoes every row
    upath.write_bytes(original)
    assert undo(ran) == 0
    assert {emulator.get_user_attributes(ran["pool"], name(i))["custom:tier"]
            for i in range(1, 9)} == {"silver"}


def test_the_undo_writes_only_to_the_pool_the_run_wrote_to(
    ran: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # WHEN the undo is given another pool than the one the run's journal records
    ran["emulator"].reset()
    code = undo(ran, "--user-pool-id", ran["other"])
    # THEN it refuses naming the run's pool, and nothing is called
    assert code == 2
    assert f"wrote to {ran['pool']}" in capsys.readouterr().err
    assert calls(ran["emulator"], *WRITES, "AdminGetUser") == 0
    # ... and given the run's own, it undoes
    assert undo(ran, "--user-pool-id", ran["pool"]) == 0


def test_the_summary_gives_the_undo_no_profile(ran: dict[str, Any]) -> None:
    # GIVEN the run's summary edited to name a profile and client metadata
    from batch.commands.undo import undo_config

    summary = Path(f"{ran['report']}.summary.json")
    data = json.loads(summary.read_text())
    data["settings"].update(profile="attacker", client_metadata={"k": "v"}, workers=3)
    summary.write_text(json.dumps(data))
    # WHEN the undo is configured  THEN neither reaches it (the speed does)
    config, _ = undo_config(str(ran["report"]), {"endpoint_url": ran["emulator"].endpoint_url})
    assert not config.profile and not config.client_metadata
    assert config.workers == 3


def test_a_resume_refuses_an_earlier_image_naming_another_user(tmp_path: Path) -> None:
    # GIVEN an unfinished run's undo file where row 2's image (not journaled yet: the run was
    # killed) was edited to name another user
    from batch.errors import FatalError
    from batch.models import UserUpdate
    from batch.record.before_images import BeforeImages, Remembering, UndoLog, UndoRecord

    header = {"pool": "p", "input_sha256": "x", "settings": "s"}
    log = UndoLog(tmp_path / "r.csv.undo.jsonl", header)
    log.record(UndoRecord(2, "victim", {"email": "attacker@example.com"}, {"email": "x@y.z"}))
    log.close()
    resumed = UndoLog(tmp_path / "r.csv.undo.jsonl", header)

    class Found:
        reads = 0

        def find(self, key: str) -> list[dict[str, str]]:
            return [{"username": key}]

        def close(self) -> None:
            pass

    step = BeforeImages(lambda u: u, Remembering(Found()), resumed)  # type: ignore[arg-type]
    # WHEN the resumed run reaches row 2 (user u2)  THEN it stops: the journal must not vouch
    # for that image; a row whose image names its own user goes on
    with pytest.raises(FatalError, match="another user"):
        step(UserUpdate(2, "u2", (("email", "x@y.z"),)))
    assert step(UserUpdate(3, "u3", (("email", "x@y.z"),))).row == 3
    resumed.close()
