"""What the benchmarks share: the emulator in its own process, measured child processes, tables.

Every client runs as its own child process and is reaped with ``os.wait4``, so its CPU
seconds (ru_utime + ru_stime) and peak RSS (ru_maxrss) are its own, apart from the emulator's.
Wall time is taken around the whole child: start-up, imports and drain included.

Nothing here talks to anything but 127.0.0.1: children get dummy credentials, no profile, no
config files and no instance metadata.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
PYTHON = sys.executable
UPDATE = "AdminUpdateUserAttributes"

sys.path.insert(0, str(ROOT))
from batch.emulator import EmulatorAdmin  # noqa: E402


def child_env() -> dict[str, str]:
    """The environment of every child: dummy credentials, nothing that could reach AWS."""
    env = {
        k: v for k, v in os.environ.items()
        if k not in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN",
                     "AWS_SECURITY_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
                     "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                     "AWS_CONTAINER_CREDENTIALS_FULL_URI")
    }
    env.update({
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
        "PYTHONPATH": str(ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
        "NO_PROXY": "127.0.0.1,localhost",
    })
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        env.pop(proxy, None)
    return env


@dataclass
class Measured:
    """One child process, start to exit."""

    argv: list[str]
    returncode: int
    wall_s: float
    cpu_s: float
    user_s: float
    system_s: float
    maxrss_mb: float
    voluntary_switches: int
    involuntary_switches: int
    stdout: str
    stderr: str
    timed_out: bool = False


def run_measured(
    argv: Sequence[str], *, workdir: Path, timeout: float = 1800.0, label: str = "child"
) -> Measured:
    """Run ``argv`` as a child, reap it with wait4, and return its wall, CPU and peak RSS."""
    out_path, err_path = workdir / f"{label}.stdout", workdir / f"{label}.stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(argv), stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=child_env(),
            cwd=str(workdir),
        )
        expired = threading.Event()

        def kill() -> None:
            expired.set()
            try:
                os.kill(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill)
        timer.daemon = True
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    user, system = usage.ru_utime, usage.ru_stime
    return Measured(
        argv=list(argv), returncode=proc.returncode, wall_s=wall, cpu_s=user + system,
        user_s=user, system_s=system, maxrss_mb=usage.ru_maxrss / 1024.0,
        voluntary_switches=usage.ru_nvcsw, involuntary_switches=usage.ru_nivcsw,
        stdout=out_path.read_text(errors="replace"), stderr=err_path.read_text(errors="replace"),
        timed_out=expired.is_set(),
    )


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a running process (the emulator), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


@dataclass
class EmulatorProcess:
    """``python -m batch emulator ... --ready-file F`` in its own process."""

    args: Sequence[str]
    workdir: Path
    label: str = "emulator"
    proc: subprocess.Popen[bytes] | None = None
    endpoint_url: str = ""
    user_pool_id: str = ""
    admin: EmulatorAdmin | None = None
    seconds_to_ready: float = 0.0
    _log: Any = field(default=None, repr=False)

    def start(self, *, timeout: float = 600.0) -> EmulatorProcess:
        ready = self.workdir / f"{self.label}.ready.json"
        ready.unlink(missing_ok=True)
        self._log = (self.workdir / f"{self.label}.log").open("wb")
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "batch", "emulator", *self.args, "--ready-file", str(ready)],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=child_env(), cwd=str(self.workdir),
        )
        while not ready.exists():
            if self.proc.poll() is not None:
                log = (self.workdir / f"{self.label}.log").read_text(errors="replace")
                raise RuntimeError(f"the emulator exited with {self.proc.returncode}:\n{log}")
            if time.perf_counter() - started > timeout:
                self.stop()
                raise RuntimeError(f"the emulator was not ready after {timeout:.0f}s")
            time.sleep(0.1)
        info = json.loads(ready.read_text())
        self.seconds_to_ready = time.perf_counter() - started
        self.endpoint_url = str(info["endpoint_url"])
        self.user_pool_id = str(info.get("user_pool_id") or "")
        if not self.endpoint_url.startswith("http://127.0.0.1:"):
            self.stop()
            raise RuntimeError(f"the emulator is not on 127.0.0.1: {self.endpoint_url}")
        self.admin = EmulatorAdmin(self.endpoint_url)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def update_stats(stats: Mapping[str, Any], operation: str = UPDATE) -> dict[str, int]:
    """One operation's counters from /_emulator/stats (zeros when it was never called)."""
    row = stats.get("operations", {}).get(operation) or {}
    keys = ("calls", "accepted", "throttled", "faults", "dropped", "invalid", "injected", "errors")
    return {k: int(row.get(k, 0)) for k in keys}


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> int:
    count = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


def cognito_batch(*args: str) -> list[str]:
    return [PYTHON, "-m", "batch", *args]


def read_summary(report: Path) -> dict[str, Any]:
    """cognito-batch's REPORT.summary.json (beside the report); {} when there is none."""
    path = report.with_name(report.name + ".summary.json")
    if not path.exists():
        return {}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Plain aligned text: numbers right-aligned, text left-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    numeric = [all(_is_number(row[i]) for row in rows) if rows else False
               for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w)
                 for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    out = [line(list(headers)), line(["-" * w for w in widths])]
    out.extend(line(r) for r in cells)
    return "\n".join(out)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:.1f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        if abs(value) >= 0.01:
            return f"{value:.3f}"
        return f"{value:.2e}"
    return str(value)


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import platform

    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in load],
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def code_state() -> dict[str, str]:
    """The commit and a digest of batch/ as it is on disk: others may edit it during a run."""
    import hashlib

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=30, check=False)
        except (OSError, subprocess.SubprocessError):
            return "?"
        return done.stdout.strip() if done.returncode == 0 else "?"

    digest = hashlib.sha256()
    for path in sorted((ROOT / "batch").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "batch_dirty": str(bool(git("status", "--porcelain", "--", "batch"))).lower(),
            "batch_sha256": digest.hexdigest()[:16]}


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("boto3", "botocore", "moto", "tenacity", "cognito-batch"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "?"
    return out


def save_json(path: Path, payload: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
