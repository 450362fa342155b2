"""Screenshot an HTML report in headless Chromium: ``make screenshot`` (after ``make demo``).

    python docs/screenshot.py [REPORT.html] [OUT.png]

Defaults: reports/demo.report.html -> docs/report.png, 1200 px wide, the whole page.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser import Browser, find_chromium, problems  # noqa: E402


def main(argv: list[str]) -> int:
    page = Path(argv[0] if argv else ROOT / "reports" / "demo.report.html").resolve()
    out = Path(argv[1] if len(argv) > 1 else ROOT / "docs" / "report.png")
    binary = find_chromium()
    if binary is None:
        print("screenshot: no chromium on PATH (apt-get install -y chromium)", file=sys.stderr)
        return 2
    if not page.is_file():
        print(f"screenshot: {page}: no such file (run make demo first)", file=sys.stderr)
        return 2
    with Browser(binary) as browser:
        browser.open(width=1200)
        found = problems(browser.load(page.as_uri()))
        browser.screenshot(out)
    for problem in found:
        print(f"screenshot: {problem}", file=sys.stderr)
    print(f"screenshot: {out} ({out.stat().st_size:,} bytes)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
