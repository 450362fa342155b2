"""A nightly sync at N users, 0.1 % changed: ``--incremental`` against ``--skip-unchanged`` in
one run (issue 22 item 5(a)).

The pool is an in-process fake (``FastPool``): every call answered at once, the users in a
dict, updates applied to it. At Cognito's real quotas paging 1 M users (ListUsers, 60 a page at
~25/s) takes ~11 minutes, which would make this bench an hour; so reads run unpaced here
(``list_rate``/``get_rate`` 1e6) and the table gives both the measured wall time and the wall
time at the real quotas (measured + read calls / read quota - the tool's own read seconds are
in the measured part). Writes are paced as a real run paces them: the default rate (polite,
0.9 of the UserUpdate quota, 50/s here: ``GetProvisionedLimit`` answers 50).

    .venv/bin/python bench/nightly.py --users 1000000

Steps, each a fresh ``Job`` in its own child process (``os.wait4``: its own RSS): ``day1``
(``--incremental`` with no state yet: every user written, unpaced, to make the state),
then on day 2's input (one row in 1,000 changed) ``incremental`` (``--incremental --verify
100``) and ``skip_unchanged`` (``--skip-unchanged``, the pool as day 1 left it: the same
starting point, restored between the two).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
POOL = "us-east-1_nightly"
Q = 50  # the UserUpdate quota the fake answers
LIST_QUOTA, LIST_PAGE = 25.0, 60  # the tool's polite ListUsers rate and page, for the model
GET_QUOTA = 100.0


class FastPool:
    """The calls a run makes, answered at once from a dict of users."""

    region = "us-east-1"

    def __init__(self, users: dict[str, dict[str, str]], quota: int = Q) -> None:
        self.users, self.quota = users, quota
        self.calls: dict[str, int] = {}
        self.first_write: float | None = None

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def describe_user_pool(self, user_pool_id: str) -> dict[str, Any]:
        return {"Id": user_pool_id, "Name": "nightly", "EstimatedNumberOfUsers": len(self.users),
                "SchemaAttributes": [
                    {"Name": "sub", "AttributeDataType": "String", "Mutable": False},
                    {"Name": "given_name", "AttributeDataType": "String", "Mutable": True},
                    {"Name": "email", "AttributeDataType": "String", "Mutable": True},
                ]}

    def get_provisioned_limit(self, category: str) -> tuple[int, int]:
        return {"UserUpdate": (self.quota, 0), "UserRead": (120, 0), "UserList": (30, 0)}[category]

    def update_user_attributes(self, user_pool_id: str, username: str, attributes: Any,
                               **kwargs: Any) -> None:
        if self.first_write is None:
            self.first_write = time.monotonic()
        self._count("AdminUpdateUserAttributes")
        self.users.setdefault(username, {}).update(dict(attributes))

    def delete_user_attributes(self, *args: Any, **kwargs: Any) -> None:
        self._count("AdminDeleteUserAttributes")

    def get_user(self, user_pool_id: str, username: str) -> dict[str, str]:
        self._count("AdminGetUser")
        from batch.errors import RowError

        if username not in self.users:
            raise RowError("UserNotFoundException", "no such user")
        return {**self.users[username], "username": username}

    def list_users_page(self, user_pool_id: str, *, pagination_token: str | None = None,
                        filter_expression: str | None = None,
                        limit: int = 60) -> tuple[list[dict[str, str]], str | None]:
        self._count("ListUsers")
        names = self._names = getattr(self, "_names", None) or sorted(self.users)
        start = int(pagination_token or 0)
        page = [{**self.users[n], "username": n} for n in names[start : start + limit]]
        following = start + limit
        return page, (str(following) if following < len(names) else None)


def write_input(path: Path, n: int, changed_every: int) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("username,given_name\n")
        for start in range(1, n + 1, 100_000):
            handle.write("".join(
                f"user{i:08d},{'new' if changed_every and i % changed_every == 0 else 'name'}{i}\n"
                for i in range(start, min(start + 100_000, n + 1))))
    return path


def child(step: str, folder: str) -> int:
    sys.path.insert(0, str(ROOT))
    from batch.commands.run import Job
    from batch.config import build_config

    work = Path(folder)
    pool_file = work / "pool.pickle"
    users = pickle.loads(pool_file.read_bytes())
    fake = FastPool(users, quota=100_000 if step == "day1" else Q)  # day 1: unpaced, to set up
    source = work / ("day1.csv" if step == "day1" else "day2.csv")
    settings: dict[str, Any] = {
        "input": str(source), "user_pool_id": POOL, "report": str(work / "out.csv"),
        "quiet": True, "confirm": False, "undo": False, "list_rate": 1e6, "get_rate": 1e6,
        "workers": 8}
    if step == "day1":
        settings.update(incremental=True, rate="100000")
    elif step == "incremental":
        settings.update(incremental=True, verify="100")
    else:
        settings.update(skip_unchanged=True, report=str(work / "skip.csv"))
    started = time.monotonic()
    result = Job(build_config(None, settings), gateway=fake,  # type: ignore[arg-type]
                 stream=io.StringIO()).run()
    wall = time.monotonic() - started
    if step == "day1":
        pool_file.write_bytes(pickle.dumps(fake.users))
    s = result.summary
    sys.stdout.write(json.dumps({
        "step": step, "exit_code": result.exit_code, "wall_s": round(wall, 1),
        "first_write_s": None if fake.first_write is None else round(fake.first_write - started, 1),
        "counts": s.get("counts"), "calls": s.get("calls"), "read_calls": s.get("read_calls"),
        "gateway_calls": fake.calls, "incremental": s.get("incremental"),
        "lookup": s.get("lookup")}) + "\n")
    return 0


def measured(step: str, folder: Path) -> dict[str, Any]:
    argv = [sys.executable, str(Path(__file__).resolve()), "child", step, str(folder)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AWS_ACCESS_KEY_ID": "bench",
           "AWS_SECRET_ACCESS_KEY": "bench", "AWS_EC2_METADATA_DISABLED": "true"}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    out = proc.stdout.read().decode() if proc.stdout else ""
    err = proc.stderr.read().decode() if proc.stderr else ""
    result: dict[str, Any] = {"peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
                              "cpu_s": round(usage.ru_utime + usage.ru_stime, 1)}
    try:
        result.update(json.loads(out.strip().splitlines()[-1]))
    except (IndexError, ValueError):
        result["stderr"] = err[-3000:]
    print(json.dumps(result), file=sys.stderr, flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--changed-every", type=int, default=1000)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "nightly.json"))
    args = parser.parse_args()
    record: dict[str, Any] = {"command": " ".join(["bench/nightly.py", *sys.argv[1:]]),
                              "loadavg_at_start": os.getloadavg(), "steps": []}
    with tempfile.TemporaryDirectory(prefix="nightly-") as name:
        folder = Path(name)
        users = {f"user{i:08d}": {"given_name": f"old{i}"} for i in range(1, args.users + 1)}
        (folder / "pool.pickle").write_bytes(pickle.dumps(users))
        write_input(folder / "day1.csv", args.users, 0)
        write_input(folder / "day2.csv", args.users, args.changed_every)
        record["steps"].append(measured("day1", folder))
        day1_pool = (folder / "pool.pickle").read_bytes()
        record["steps"].append(measured("incremental", folder))
        (folder / "pool.pickle").write_bytes(day1_pool)  # the same starting point
        record["steps"].append(measured("skip_unchanged", folder))
    record["loadavg_at_end"] = os.getloadavg()
    changed = args.users // args.changed_every if args.changed_every else 0
    free = 0.9 * Q  # the default's ceiling: 90 % of the quota
    record["done_when_wall_s"] = round(2 * changed / free + 60, 1)
    Path(args.out).parent.mkdir(exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print("| step | wall s (measured) | wall s at real read quotas | update calls | read calls "
          "| first write s | peak RSS MB |\n|---|---|---|---|---|---|---|")
    for s in record["steps"][1:]:
        calls = s.get("gateway_calls") or {}
        pages, gets = calls.get("ListUsers", 0), calls.get("AdminGetUser", 0)
        real = s.get("wall_s", 0) + pages / LIST_QUOTA + gets / GET_QUOTA
        print(f"| {s['step']} | {s.get('wall_s')} | {real:.0f} | "
              f"{calls.get('AdminUpdateUserAttributes', 0)} | {pages} ListUsers + {gets} "
              f"AdminGetUser | {s.get('first_write_s')} | {s['peak_rss_mb']} |")
    print(f"done when (incremental): wall <= 2 x {changed} / {free:g} + 60 = "
          f"{record['done_when_wall_s']} s; changed rows {changed}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        sys.exit(child(sys.argv[2], sys.argv[3]))
    sys.exit(main())
