"""The house's shape: files the code finds by path are where it looks."""

from __future__ import annotations

from pathlib import Path

from batch.commands import demo

ROOT = Path(__file__).resolve().parent.parent


def test_the_demo_finds_its_sample_data_and_job_file() -> None:
    # GIVEN the demo module, wherever the layers put it
    # THEN the files it opens by path exist (a move into commands/ once broke this)
    assert (demo.ROOT / "sample_data" / "seed_users.csv").is_file()
    assert (demo.ROOT / "jobs" / "demo.toml").is_file()


def test_the_layout_page_lists_every_module_as_it_is() -> None:
    # GIVEN the page docs/layout.md and the generator that writes it from the package
    import importlib.util

    spec = importlib.util.spec_from_file_location("layout", ROOT / "docs" / "layout.py")
    assert spec is not None and spec.loader is not None
    layout = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(layout)
    # THEN the committed page is what the package says now (run: python docs/layout.py)
    assert (ROOT / "docs" / "layout.md").read_text(encoding="utf-8") == layout.page()


def test_no_module_outside_the_emulator_is_over_500_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "batch").rglob("*.py")
            if "emulator" not in p.parts
            and (n := len(p.read_text(encoding="utf-8").splitlines())) > 500}
    assert long == {}
