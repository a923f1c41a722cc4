"""The package's lazy API names stay what they are, however often and in whatever order used."""

from __future__ import annotations

import subprocess
import sys


def test_api_functions_stay_functions_after_their_modules_load():
    code = (
        "import soebench, soebench.mining.build, soebench.manifest.io\n"
        "from soebench.evaluation import EvalOptions\n"  # the module of evaluate, loaded first
        "for _ in range(2):\n"
        "    for name in ('evaluate', 'build_dataset', 'read_manifest', 'to_fiftyone'):\n"
        "        assert callable(getattr(soebench, name)) and not isinstance(getattr(soebench, name), type(soebench)), name\n"
        "from soebench.evaluation import evaluate\n"
        "assert soebench.evaluate is evaluate\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
