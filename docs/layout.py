"""Write docs/layout.md: every module of batch/, one line each, from its docstring's first
paragraph. Run after adding, moving or removing a module: python docs/layout.py
(tests/test_layout.py fails while the page and the package disagree)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("", "inputs", "plan", "pace", "engine", "record", "remote", "store", "commands",
            "view", "emulator")
INTRO = """# Layout

Every module of `batch/`, one line each (its docstring's first sentence), layer by layer in
the order the data flows. Each layer imports only from the layers below it: the
import-linter contracts in `pyproject.toml`, run by `make lint`. This page is written by
`python docs/layout.py`; the test suite fails when a module is missing from it.
"""


def first_sentence(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    text = " ".join(doc.split("\n\n")[0].split())
    match = re.match(r"(.+?\.)(\s|$)", text)
    return (match.group(1) if match else text).rstrip(".") + "."


def modules() -> list[tuple[str, list[tuple[str, str]]]]:
    out = []
    for pkg in PACKAGES:
        folder = ROOT / "batch" / pkg
        rows = [(p.name, first_sentence(p)) for p in sorted(folder.glob("*.py"))
                if p.name != "__main__.py"]
        out.append((f"batch/{pkg}/" if pkg else "batch/", rows))
    return out


def page() -> str:
    parts = [INTRO]
    for heading, rows in modules():
        parts.append(f"\n## `{heading}`\n\n")
        parts.extend(f"- `{name}`: {line}\n" for name, line in rows)
    return "".join(parts)


if __name__ == "__main__":
    target = ROOT / "docs" / "layout.md"
    target.write_text(page(), encoding="utf-8")
    sys.stdout.write(f"wrote {target}\n")
