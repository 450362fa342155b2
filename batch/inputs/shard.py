"""Shards for array jobs: ``--shard K/N`` runs the rows whose user key hashes to shard K.

    --shard 0/3, --shard 1/3, --shard 2/3      three containers, one input, disjoint rows
    --shard auto                                K and N from AWS_BATCH_JOB_ARRAY_INDEX / _SIZE
    --shard auto/3                              K from AWS Batch or JOB_COMPLETION_INDEX (k8s)

K counts from 0, as both schedulers' indexes do. A row belongs to shard
``blake2b(casefold(key)) mod N``: a stable hash (never Python's ``hash()``, which is salted per
process), so every container agrees, and one user never lands in two shards. The key is
casefolded because Cognito compares usernames and email aliases case-insensitively by default:
two spellings of one user stay in one shard (in a case-sensitive pool this only groups some
distinct users together, which is harmless).

Each shard paces at its share of the rates (``rate / N``, and ``max_rate``, ``list_rate``,
``get_rate``): Cognito's quotas are per account and region, so **shards add CPU, not quota**.
Each writes its own report, summary and journal, named with ``.shard-K-of-N`` before the
report's suffix (``out.csv`` -> ``out.shard-1-of-3.csv``), and rows of other shards never
appear in it; ``cognito-batch merge out.csv`` assembles the one report and summary
(``batch.commands.merge``). A shard that is retried (same command, same K) resumes from its journal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace

from batch.inputs.scan import KeyScan, scan_column
from batch.rowset import RowSet
from batch.specs import SHARD_NAME, Shard, shard_of

__all__ = ["SHARD_NAME", "Shard", "scan_shard", "shard_of"]

def scan_shard(values: Callable[[], Iterable[str]], shard: Shard | None) -> KeyScan:
    """The key scan over this shard's rows only; row numbers stay the input's."""
    if shard is None:
        return scan_column(values)
    owned = [0]
    foreign = RowSet()

    def masked() -> Iterator[str]:
        owned[0] = 0
        for row, value in enumerate(values(), start=1):
            if shard.owns(value):
                owned[0] += 1
                yield value
            else:
                foreign.add(row)
                yield ""  # keeps its row number, joins no duplicate, counts as no key

    scan = scan_column(masked)
    return replace(scan, rows=owned[0], input_rows=scan.rows, foreign=foreign)

