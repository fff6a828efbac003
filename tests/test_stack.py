"""A torch/torchaudio pair that does not load is one line (versions found, the repair command), never a traceback."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import pytest

from guesser.stack import StackError, check_stack, repair_command, required_versions

# What torchaudio 2.11.1 beside torch 2.11.0 raised on a fresh install (issue 10).
BROKEN = ("OSError('/venv/lib/python3.11/site-packages/torchaudio/lib/libtorchaudio.so: "
          "undefined symbol: torch_exception_get_what_without_backtrace')")

FAKE_BROKEN_TORCHAUDIO = f"""
import builtins, sys
real_import = builtins.__import__
def fake_import(name, *args, **kwargs):
    if name == "torchaudio" or name.startswith("torchaudio."):
        raise {BROKEN}
    return real_import(name, *args, **kwargs)
builtins.__import__ = fake_import
from guesser.cli import main
sys.argv = ["guesser", *sys.argv[1:]]
main()
"""


def test_required_versions_are_the_exact_pins():
    pins = required_versions()
    assert pins == {"torch": "2.11.0", "torchaudio": "2.11.0"}
    assert metadata.version("torch").split("+")[0] == pins["torch"]  # the lock installed what the pins say


def test_check_stack_passes_on_this_install():
    check_stack()  # raises if the installed pair did not load


@pytest.mark.parametrize("argv", [
    ["classify", "clip.wav"],
    ["preprocess", "/data/FSD50K"],
    ["train", "list"],
    ["models"],
    ["play", "--file", "clip.wav"],
])
def test_every_command_says_one_line_when_torchaudio_does_not_load(argv, tmp_path):
    p = subprocess.run([sys.executable, "-c", FAKE_BROKEN_TORCHAUDIO, *argv], capture_output=True, text=True,
                       cwd=tmp_path, timeout=120)
    assert p.returncode == StackError.exit_code == 3, p.stderr
    assert "Traceback" not in p.stderr and p.stdout == ""
    assert p.stderr.count("\n") == 1, p.stderr
    line = p.stderr
    assert line.startswith("error: PyTorch does not load (OSError: ")
    assert "undefined symbol: torch_exception_get_what_without_backtrace" in line
    found = f"found torch {metadata.version('torch')}, torchaudio {metadata.version('torchaudio')}"
    assert found in line and "guesser needs torch 2.11.0, torchaudio 2.11.0" in line
    assert line.rstrip().endswith(repair_command())
    assert "'torch==2.11.0' 'torchaudio==2.11.0'" in repair_command()
