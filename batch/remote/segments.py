"""A checkpoint segment's bytes (``checkpoint.py``): its header line, then journal lines.

    #segment {"run": RUN, "seq": N, "holder": HOLDER}     which run put it, as which number
    ...journal lines (segment 0: the journal's JSON header first)...

The header line lets a resume refuse what the run did not write: a segment planted by
someone who may only put objects on the prefix (the run's id is random and never written
anywhere else), one renumbered or copied from another place in the run, one of another run.
Someone who can read and write the whole prefix can forge a consistent checkpoint, as with a
journal (docs/reliability.md).
"""

from __future__ import annotations

import json
import re
import zlib

SEGMENT = re.compile(r"seg-(\d{6,})")
_MARK = b"#segment "


def segment_name(n: int) -> str:
    return f"seg-{n:06d}"


def segment_header(run: str, seq: int, holder: str) -> bytes:
    """A segment's first line: the run it belongs to (a random id chosen by the run's first
    attempt, kept by its resumes), its number, and the lease holder that put it."""
    return _MARK + json.dumps({"run": run, "seq": seq, "holder": holder}).encode() + b"\n"


def read_segment_header(data: bytes) -> tuple[str, int, int] | None:
    """(run, seq, bytes of the header line) of a segment; None if it has no such line."""
    end = data.find(b"\n")
    if not data.startswith(_MARK) or end < 0:
        return None
    try:
        record = json.loads(data[len(_MARK) : end])
        run, seq = record["run"], record["seq"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(run, str) or not run or isinstance(seq, bool) or not isinstance(seq, int):
        return None
    return run, seq, end + 1


def rows_in_range(data: bytes) -> bool:
    """Every result line's row is a data row (1 or more): the input's upper bound is checked
    with the journal, once the input is read (the job's resume check)."""
    for line in data.splitlines():
        payload = line[9:]
        if payload == b"=complete":
            continue
        if payload[:1] == b">":  # a write-ahead mark (journal version 3)
            if not payload[1:].isdigit() or int(payload[1:]) < 1:
                return False
            continue
        row = payload[: payload.find(b"\t")]
        if not row.isdigit() or int(row) < 1:
            return False
    return True


def whole_lines(data: bytes, *, header: bool) -> int:
    """How many leading bytes of a segment are trusted journal lines (checksums hold; the
    first line of segment 0 is the JSON header)."""
    good = 0
    if header:
        end = data.find(b"\n")
        if end < 0:
            return 0
        try:
            json.loads(data[:end])
        except ValueError:
            return 0
        good = end + 1
    while good < len(data):
        end = data.find(b"\n", good)
        if end < 0 or data[good + 8 : good + 9] != b"\t":
            break
        try:
            if zlib.crc32(data[good + 9 : end]) != int(data[good : good + 8], 16):
                break
        except ValueError:
            break
        good = end + 1
    return good
