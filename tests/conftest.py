from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.browser import Chromium

# Tests import their helpers as ``tests.<module>`` (the rootdir is on sys.path). This directory is on sys.path too,
# as it is on the PYTHONPATH of the servers tests start (servers.Program), for modules named by file.
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    """One headless Chromium per test module (started on first use, stopped by its PID after the module)."""
    from tests.browser import Chromium

    with Chromium() as chromium:
        yield chromium
