"""Write a generated documentation page, or with `--check` fail when the committed one is stale."""

import sys
from pathlib import Path


def write_or_check(page: Path, text: str, script: str) -> int:
    if "--check" in sys.argv[1:]:
        if not page.is_file() or page.read_text() != text:
            print(f"{page} is out of date: python {script}")
            return 1
        return 0
    page.write_text(text)
    print(f"wrote {page}")
    return 0
