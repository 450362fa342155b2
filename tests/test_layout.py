"""The house's shape: files the code finds by path are where it looks."""

from __future__ import annotations

from batch.commands import demo


def test_the_demo_finds_its_sample_data_and_job_file() -> None:
    # GIVEN the demo module, wherever the layers put it
    # THEN the files it opens by path exist (a move into commands/ once broke this)
    assert (demo.ROOT / "sample_data" / "seed_users.csv").is_file()
    assert (demo.ROOT / "jobs" / "demo.toml").is_file()
