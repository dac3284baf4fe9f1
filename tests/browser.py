"""Headless Chromium (Debian's `chromium`, which `make test` installs) for tests that look at what a reader sees.

Every request other than the file itself goes to a closed local port (``--proxy-server``): pages are checked as
they render on a machine without internet.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM_FLAGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                  "--proxy-server=http://127.0.0.1:9",  # any request that is not a local file fails: no network
                  "--disable-dev-shm-usage"]


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("Debian's chromium is not installed: `make test` installs it (apt-get install -y chromium)")
    return path


def run_chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    """Run headless Chromium once with ``args`` in a fresh profile under ``tmp``, offline."""
    profile = tmp / f"chromium-profile-{len(list(tmp.glob('chromium-profile-*')))}"
    return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=180, check=True)


def dump_dom(url: str, tmp: Path, budget_ms: int = 8000) -> str:
    """The DOM of ``url`` after its scripts ran (``--dump-dom``), in a fresh profile."""
    return run_chromium(tmp, f"--virtual-time-budget={budget_ms}", "--dump-dom", url).stdout


def visible_text(dom: str) -> str:
    """The DOM without <script>/<style> contents and tags: what a reader can see (roughly)."""
    dom = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", dom)
    return re.sub(r"\s+", " ", re.sub(r"(?s)<[^>]+>", " ", dom))
