"""The docs must work from any clone: no absolute paths of a development machine."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MACHINE_PATH = re.compile(r"(?<![\w.])/(work|root|home|tmp|Users)/[\w.-]")


def test_docs_hold_no_absolute_machine_paths():
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")),
             *sorted((ROOT / "auditor_lite" / "assets").rglob("*.md"))]
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}" for path in files
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if MACHINE_PATH.search(line)]
    assert not found, "absolute paths of a development machine:\n" + "\n".join(found)
