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

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--proxy-server=http://127.0.0.1:9",  # any request that is not a local file fails: no network
    "--disable-dev-shm-usage",
]


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("Debian's chromium is not installed: `make test` installs it (apt-get install -y chromium)")
    return path


def run_chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    """Run headless Chromium once with ``args`` in a fresh profile under ``tmp``, offline."""
    profile = tmp / f"chromium-profile-{len(list(tmp.glob('chromium-profile-*')))}"
    return subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )


def dump_dom(url: str, tmp: Path, budget_ms: int = 8000) -> str:
    """The DOM of ``url`` after its scripts ran (``--dump-dom``), in a fresh profile."""
    return run_chromium(tmp, f"--virtual-time-budget={budget_ms}", "--dump-dom", url).stdout


def visible_text(dom: str) -> str:
    """The DOM without <script>/<style> contents and tags: what a reader can see (roughly)."""
    dom = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", dom)
    return re.sub(r"\s+", " ", re.sub(r"(?s)<[^>]+>", " ", dom))


def evaluate(url: str, tmp: Path, expression: str, media: str = "print", timeout: float = 120.0) -> object:
    """The value of the JavaScript ``expression`` (awaited when it is a promise) on ``url`` loaded in headless
    Chromium with CSS ``media`` emulated ("print": the layout Chromium prints), offline, in a fresh profile. Spoken
    through the Chrome DevTools Protocol on ``--remote-debugging-pipe`` (fd 3: commands in, fd 4: replies out,
    each message JSON ended by a NUL byte): no extra package."""
    import json
    import os
    import select
    import time

    profile = tmp / f"chromium-profile-{len(list(tmp.glob('chromium-profile-*')))}"
    commands_r, commands_w = os.pipe()
    replies_r, replies_w = os.pipe()

    def child_fds() -> None:  # the child's fd 3 reads our commands, its fd 4 writes the replies
        a, b = os.dup(commands_r), os.dup(replies_w)
        os.dup2(a, 3)
        os.dup2(b, 4)
        os.set_inheritable(3, True)
        os.set_inheritable(4, True)

    proc = subprocess.Popen(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        close_fds=False,
        preexec_fn=child_fds,
    )  # noqa: PLW1509
    os.close(commands_r)
    os.close(replies_w)
    deadline = time.monotonic() + timeout
    buffer = b""
    ids = iter(range(1, 1_000_000))

    def receive() -> dict:
        nonlocal buffer
        while b"\0" not in buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([replies_r], [], [], left)[0]:
                raise TimeoutError(f"chromium did not answer within {timeout:.0f} s on {url}")
            chunk = os.read(replies_r, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium closed the DevTools pipe on {url}")
            buffer += chunk
        message, buffer = buffer.split(b"\0", 1)
        return json.loads(message)

    def send(method: str, params: dict | None = None, session: str | None = None, until: str | None = None) -> dict:
        """Send one command; return its result (or, with ``until``, the first event of that name after it)."""
        n = next(ids)
        message = {"id": n, "method": method, "params": params or {}} | ({"sessionId": session} if session else {})
        os.write(commands_w, json.dumps(message).encode() + b"\0")
        result = None
        while True:
            reply = receive()
            if reply.get("id") == n:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result = reply["result"]
                if until is None:
                    return result
            elif until is not None and reply.get("method") == until and result is not None:
                return reply["params"]

    try:
        target = send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        send("Emulation.setEmulatedMedia", {"media": media}, session)
        send("Page.enable", session=session)
        send("Page.navigate", {"url": url}, session, until="Page.loadEventFired")
        answer = send(
            "Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True}, session
        )
        if "exceptionDetails" in answer:
            raise RuntimeError(f"{expression[:80]}...: {answer['exceptionDetails']}")
        return answer["result"].get("value")
    finally:
        try:
            send("Browser.close")
        except (OSError, RuntimeError, TimeoutError):
            pass
        os.close(commands_w)
        os.close(replies_r)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
