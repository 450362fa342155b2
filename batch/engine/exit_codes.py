"""The documented exit codes, and the one rule that picks a run's.

    0    every row updated or unchanged
    1    some rows invalid, failed or skipped (see the report)
    2    usage, configuration or input error, or a fatal Cognito error: the job stopped
    129  hung up (SIGHUP: the terminal or ssh session closed), stopped as for SIGTERM
    130  interrupted (SIGINT)
    143  terminated (SIGTERM)

Each signal exits 128 + its number, the shell's convention for a process a signal ended, so
a wrapper or scheduler can tell a hang-up (129) from a deliberate stop (143): a job that ends
129 was not stopped by anyone and can simply be resumed, under nohup, tmux or a scheduler.
"""

from __future__ import annotations

from collections.abc import Mapping

EXIT_OK = 0
EXIT_ROWS = 1
EXIT_FATAL = 2
EXIT_SIGHUP = 129
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


def exit_code(counts: Mapping[str, int], *, fatal: bool, signal_code: int = 0) -> int:
    """A signal's code first, then a fatal stop, then whether any row did not succeed."""
    if signal_code:
        return signal_code
    if fatal:
        return EXIT_FATAL
    if counts.get("invalid") or counts.get("failed") or counts.get("skipped"):
        return EXIT_ROWS
    return EXIT_OK
