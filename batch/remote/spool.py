"""The local spool of an S3-report run: named for its report, so that what a killed run left
is found and removed by the next run on the same report.

A run with ``--report s3://...`` works in ``$TMPDIR/cognito-batch-TAG-XXXXXXXX`` (``TAG``: a
digest of the report's URI, never its text: a folder name in /tmp is visible to every user;
``XXXXXXXX``: mkdtemp's random part). The spool holds the report, the journal and the
before-images, personal data. A run removes its own at its end; ``kill -9`` cannot, so the next
run on that report removes it (``remove_stale_spools``), with the report's lease held.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
from pathlib import Path

from batch.store.storage import Location

_RANDOM = re.compile(r"[a-z0-9_]{8}")  # tempfile's names: 8 of these characters


def spool_prefix(location: Location) -> str:
    """The local spool's name for a report: one prefix per report URI, never a key's text
    (a folder name in /tmp is visible to every user of the machine)."""
    tag = hashlib.sha256(str(location).encode()).hexdigest()[:16]
    return f"cognito-batch-{tag}-"


def remove_stale_spools(spool: Path, location: Location) -> list[Path]:
    """Remove the spools earlier runs of ``location`` left in ``spool``'s folder (a run
    killed with SIGKILL cannot remove its own: the report, journal and before-images it
    holds are personal data). Only with the lease held: no live run of this report has a
    spool then (a run presumed dead stops at its next renewal). Only folders named
    ``spool_prefix`` + mkdtemp's 8 characters, owned by this user, seen with ``lstat``
    (a symlink is never followed); removed by ``shutil.rmtree``, which does not follow
    links inside them either where the platform allows (Linux: ``os.fwalk``)."""
    prefix, removed = spool_prefix(location), []
    folder = spool.parent
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    for name in names:
        if not (name.startswith(prefix) and _RANDOM.fullmatch(name[len(prefix):])):
            continue
        path = folder / name
        if path == spool:
            continue
        try:
            st = path.lstat()
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed
