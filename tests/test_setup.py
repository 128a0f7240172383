"""Set-up on images whose python cannot install pip into a venv (no ensurepip, as in some containers)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# a python that behaves like Debian's without python3-venv: `-m venv` fails unless told --without-pip
NO_ENSUREPIP = f"""#!/bin/sh
case " $* " in
  *" -m venv "*) case " $* " in *" --without-pip "*) ;; *) echo "Error: ensurepip is not available" >&2; exit 1;; esac;;
esac
exec {sys.executable} "$@"
"""


@pytest.mark.slow
def test_the_venv_falls_back_to_the_system_pip_and_keeps_system_packages(tmp_path):
    if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode != 0:
        pytest.skip("this python has no pip module to fall back on")
    fake = tmp_path / "python3"
    fake.write_text(NO_ENSUREPIP)
    fake.chmod(0o755)
    venv = tmp_path / "venv"
    proc = subprocess.run(
        ["make", "-C", str(REPO), f"PYTHON={fake}", f"VENV={venv}", f"{venv}/bin/python"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "using the system's pip" in proc.stdout
    python = venv / "bin" / "python"
    # inside the venv: its own prefix, the system's packages visible (a container's torch stays), pip usable
    check = subprocess.run(
        [str(python), "-c", "import sys, pip; print(sys.prefix)"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert check.returncode == 0, check.stderr
    assert Path(check.stdout.strip()).resolve() == venv.resolve()
