"""Regenerate the sample data (deterministic): python sample_data/generate.py

- seed_users.csv   the demo pool's users before the job (what the emulator is seeded with)
- users.csv        300 updates to those users (clean); users.parquet holds the same
- demo_users.csv   users.csv with a handful of deliberately bad rows, which the demo runs
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

HERE = Path(__file__).parent
FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Margaret", "Linus", "Frances",
         "Ken", "Radia", "Tim", "Hedy", "John", "Katherine", "Dennis", "Anita", "Vint"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Hamilton", "Torvalds",
        "Allen", "Thompson", "Perlman", "Berners-Lee", "Lamarr", "McCarthy", "Johnson",
        "Ritchie", "Borg", "Cerf"]
DEPARTMENTS = ["Engineering", "Finance", "Sales", "Support", "Legal", "People", "Research"]
TIERS = ["bronze", "silver", "gold", "platinum"]
HEADER = ["username", "email", "given_name", "family_name", "phone_number", "department",
          "level", "tier"]


def person(rng: random.Random, i: int) -> dict[str, str]:
    given, family = rng.choice(FIRST), rng.choice(LAST)
    return {
        "username": f"user{i:04d}",
        "email": f"{given.lower()}.{family.lower()}{i}@example.com",
        "given_name": given,
        "family_name": family,
        "phone_number": f"+1555{rng.randrange(10**6, 10**7):07d}",
        "department": rng.choice(DEPARTMENTS),
        "level": str(rng.randint(1, 9)),
        "tier": rng.choice(TIERS),
    }


def write(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, HEADER)
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    rng = random.Random(2026)
    seed = [person(rng, i) for i in range(1, 301)]
    write(HERE / "seed_users.csv", seed)
    updates = []
    for old in seed:
        new = dict(old)
        new["department"] = rng.choice(DEPARTMENTS)
        new["level"] = str(min(10, int(old["level"]) + rng.choice([0, 1])))
        new["tier"] = rng.choice(TIERS)
        new["email"] = "" if rng.random() < 0.5 else old["email"]  # empty: left alone
        updates.append(new)
    write(HERE / "users.csv", updates)
    import pandas as pd

    pd.DataFrame(updates, columns=HEADER).to_parquet(HERE / "users.parquet", index=False)
    bad = [
        {**updates[0], "username": "user9999"},  # no such user: failed (UserNotFoundException)
        {**updates[1], "username": "user0002", "email": "not-an-email"},  # invalid value
        {**updates[2], "username": "user0003x", "phone_number": "555-0100"},  # not E.164
        {**updates[3], "username": "user0004x", "level": "42"},  # over the schema's maximum
        {**updates[4], "username": "", "tier": "gold"},  # no username
        {**updates[5], "username": "user0006x", "tier": "x" * 40},  # over MaxLength
    ]
    demo = list(updates)
    for offset, row in zip((17, 64, 111, 158, 205, 252), bad, strict=True):
        demo.insert(offset, row)
    # user0002 now appears twice: both copies are invalid (the duplicate rule).
    write(HERE / "demo_users.csv", demo)


if __name__ == "__main__":
    main()
