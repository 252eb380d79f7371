"""Reading a JSON file that came from outside, with one error for every way it can be unreadable.

Model directories (manifest, config, score calibration), benchmarks (the MQ-RAVSBench JSON files)
and sample clips (truth.json) all read JSON written by someone else. A missing file, bytes that are
not UTF-8, invalid JSON and nesting deep enough to exhaust Python's recursion (``[`` x 100000) each
become ``error(path, message)``: the caller's own exception type, naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path


def read_json(path, error, missing: str = "file not found"):
    """The parsed content of ``path``; ``error(path, message)`` is raised for anything unreadable."""
    path = Path(path)
    if not path.is_file():
        raise error(path, missing)
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise error(path, f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except UnicodeDecodeError as exc:
        raise error(path, f"not UTF-8 text ({exc.reason})") from None
    except RecursionError:
        raise error(path, "JSON nested too deeply") from None
    except OSError as exc:
        raise error(path, f"unreadable ({exc.strerror or exc})") from None
