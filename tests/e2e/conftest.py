"""End-to-end tests: real processes, a real (virtual) microphone. Marker: ``e2e``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the shared test helpers (tuikit)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: end-to-end through a PulseAudio virtual microphone "
                                       "(tests/e2e/setup_virtual_mic.sh); deselect with -m 'not e2e'")
