"""The edge core stands at the bottom: loading the default model and auditing a clip imports no
training, data-reading, evaluation or calibration-fitting code, and none of the heavy libraries."""

import json
import subprocess
import sys

ALLOWED_PACKAGE_MODULES = ("auditor_lite.runtime", "auditor_lite.manifest", "auditor_lite.preprocess", "auditor_lite.jsonio",
                           "auditor_lite.media",
                           "auditor_lite.motion", "auditor_lite.resize", "auditor_lite.parallel", "auditor_lite.graph_io",
                           "auditor_lite.data.schema")
FORBIDDEN_LIBRARIES = ("torch", "transformers", "scipy", "sklearn", "librosa", "optimum", "matplotlib")

CODE = """
import json, sys
import numpy as np
from auditor_lite.runtime import Auditor
auditor = Auditor.load(intra_op_threads=1)
rng = np.random.default_rng(0)
frames = rng.integers(0, 256, (10, 96, 96, 3), dtype=np.uint8)
audio = (0.2 * rng.standard_normal(160000)).astype(np.float32)
masks = np.zeros((2, 96, 96), bool)
masks[0, 20:50, 30:60] = True
masks[1, 10:30, 10:30] = True
auditor.audit(frames, audio, "the dog on the left", masks, frame_index=3)
print(json.dumps(sorted(sys.modules)))
"""


def test_auditing_loads_only_the_edge_core():
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    ours = [m for m in loaded if m.startswith("auditor_lite.")]
    stray = [m for m in ours if not m.startswith(ALLOWED_PACKAGE_MODULES) and m != "auditor_lite.data"]
    assert not stray, f"the runtime pulled in {stray}"
    heavy = [m for m in FORBIDDEN_LIBRARIES if m in loaded]
    assert not heavy, f"the runtime imported {heavy}"


def test_the_edge_run_imports_the_installed_package():
    """CI's edge run (AUDITOR_LITE_TEST_INSTALLED=1) must test the wheel, not the source tree."""
    import os

    import auditor_lite

    if os.environ.get("AUDITOR_LITE_TEST_INSTALLED") == "1":
        assert "site-packages" in auditor_lite.__file__, auditor_lite.__file__
    else:
        assert auditor_lite.__file__.endswith("__init__.py")


def test_the_runtime_package_imports_nothing_above_it():
    """No module of auditor_lite.runtime names the data reader, evaluation, calibration, batch audits
    or the CLI: those stand on top of it (the schema's constants and errors are shared below)."""
    from pathlib import Path

    import auditor_lite.runtime as runtime

    above = ("auditor_lite.data.reader", "auditor_lite.data.synth", "auditor_lite.data.candidates", "auditor_lite.eval",
             "auditor_lite.calibration", "auditor_lite.batch_audit", "auditor_lite.audit_cli", "auditor_lite.benchmark",
             "auditor_lite.training", "auditor_lite.model", "auditor_lite.export")
    found = [f"{path.name}: {line.strip()}" for path in Path(runtime.__file__).parent.glob("*.py")
             for line in path.read_text().splitlines() if line.lstrip().startswith(("from ", "import "))
             for name in above if name in line]
    assert not found, found
