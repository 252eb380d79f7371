"""Expression templates derived from the real Ref-AVS expressions (see ``derive.py``).

``templates.json`` is package data: regenerate it with
``python -m auditor_lite.data.phrasing.derive REFAVS_METADATA_CSV templates.json``.
The Ref-AVS expressions are MIT-licensed (``LICENSE.txt``).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

TEMPLATES_FILE = "templates.json"


@lru_cache(maxsize=1)
def load_phrasing() -> dict:
    """The phrasing table: ``{"forms": {form: {"cue": ..., "templates": [{"text", "count",
    "source"}]}}, "cue_counts": ..., ...}``."""
    path = resources.files(__package__) / TEMPLATES_FILE
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"{path}: phrasing table missing or unreadable ({exc}); regenerate it "
                           "with python -m auditor_lite.data.phrasing.derive") from None
    if not isinstance(table.get("forms"), dict):
        raise RuntimeError(f"{path}: no 'forms' table")
    return table
