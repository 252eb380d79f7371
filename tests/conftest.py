"""Shared test fixtures, and the two switches of CI's edge run (.ci/run):

- ``AUDITOR_LITE_TEST_INSTALLED=1``: test the installed package (a wheel in a torch-free
  environment), not the source tree next to the tests;
- ``AUDITOR_LITE_NO_SKIPS=1``: a skipped test fails. The edge run deselects what needs an extra by
  marker (``-m "not train and not data and not video and not gpu"``); anything that still skips
  would be a test that silently never runs where the edge install is checked.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
if os.environ.get("AUDITOR_LITE_TEST_INSTALLED") != "1":
    sys.path.insert(0, str(ROOT))
# Caches (ONNX Runtime's optimised graphs, TensorRT engines) go to a folder of this test run, not
# to the user's ~/.cache; subprocesses of the tests inherit it.
if "AUDITOR_LITE_CACHE" not in os.environ:
    import tempfile

    os.environ["AUDITOR_LITE_CACHE"] = tempfile.mkdtemp(prefix="auditor-lite-test-cache-")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("AUDITOR_LITE_NO_SKIPS") == "1" and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in a run that allows no skips (AUDITOR_LITE_NO_SKIPS=1): {reason}"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES
