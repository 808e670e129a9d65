"""The soak and fault run (``scripts/soak.py``) in its short form: 45 seconds
of eight threads on every executor while workers are killed, pipelines
cancelled and deadlines expire. ``make soak`` runs the 8-minute form."""

from __future__ import annotations

import os
import pathlib

import pytest

from conftest import run_python

SOAK = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "soak.py"
SECONDS = float(os.environ.get("VEDART_SOAK_SECONDS", "45"))


@pytest.mark.timeout(SECONDS * 2 + 180)
def test_short_soak_keeps_resources_flat_and_leaves_no_process() -> None:
    result = run_python(
        f"import runpy, sys\n"
        f"sys.argv = ['soak.py', '--seconds', '{SECONDS}', '--threads', '8']\n"
        f"runpy.run_path({str(SOAK)!r}, run_name='__main__')\n",
        timeout=SECONDS * 2 + 150,
    )
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "operations right" in result.stdout
