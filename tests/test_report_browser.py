"""The HTML report in a real headless browser (Debian's `chromium`), driven over the DevTools protocol.

Chromium runs with `--remote-debugging-pipe`: it reads protocol commands (JSON, each ended by a NUL
byte) on its fd 3 and writes answers and events on its fd 4, so no port and no extra package is
needed. The test loads the report of the reference CPU run (and of a run with every verdict) from
file://, then checks: no console error or uncaught exception, no request leaves the file (works
offline), the banner shows the verdict, a real mouse click on a column header sorts the table (and a
second reverses it), and the screenshot is not blank.

Without chromium the tests are skipped, unless MLBENCH_REQUIRE_BROWSER is set (CI: `.ci/run` installs
chromium and sets it). MLBENCH_BROWSER_SHOTS=DIR keeps the screenshots there.
"""

from __future__ import annotations

import base64
import io
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("pandas")

from mlbench.report.api import build_report  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REFERENCE_RUN = REPO / "results" / "reference" / "cpu-quick-20261126"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT_S = 30.0
VIEWPORT = (1280, 1000)

pytestmark = pytest.mark.slow


def find_browser():
    for name in (os.environ.get("MLBENCH_CHROMIUM"), *BROWSERS):
        path = shutil.which(name) if name else None
        if path:
            return path
    if os.environ.get("MLBENCH_REQUIRE_BROWSER"):
        pytest.fail("no chromium found and MLBENCH_REQUIRE_BROWSER is set (install it: apt-get install chromium)")
    pytest.skip("no chromium on this machine (apt-get install chromium)")


class Browser:
    """Headless chromium over the DevTools pipe: `send` a command and wait for its answer; events are kept."""

    def __init__(self, executable: str, profile_dir: Path):
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def pipes_on_3_and_4():
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        args = [
            executable,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile_dir}",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--mute-audio",
            "--hide-scrollbars",
            f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}",
            "about:blank",
        ]
        self.log = profile_dir / "chromium.log"  # a file, not a pipe: chromium never blocks on its own output
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=(3, 4),
                preexec_fn=pipes_on_3_and_4,
            )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._next_id = 0
        self._messages: queue.Queue = queue.Queue()
        self.events: list = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        buffer = b""
        while True:
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                self._messages.put(None)
                return
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for message in messages:
                self._messages.put(json.loads(message))

    def _take(self, deadline: float):
        try:
            message = self._messages.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError("no message from chromium in time") from None
        if message is None:
            raise RuntimeError(f"chromium closed the pipe: {self.log.read_text(errors='replace')[-2000:]}")
        if "id" not in message:
            self.events.append(message)
        return message

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        command = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            command["sessionId"] = session
        os.write(self._to_browser, json.dumps(command).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            message = self._take(deadline)
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def wait_for(self, method: str, since: int = 0) -> dict:
        """The first event `method` at or after index `since` of `events`, waiting for it."""
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            for event in self.events[since:]:
                if event.get("method") == method:
                    return event
            since = len(self.events)
            self._take(deadline)

    def close(self):
        try:
            self.send("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser)


class Tab:
    """One page of the browser, attached in flat mode: navigate, evaluate, click, screenshot, errors."""

    def __init__(self, browser: Browser):
        self.browser = browser
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": VIEWPORT[0], "height": VIEWPORT[1], "deviceScaleFactor": 1, "mobile": False},
        )

    def call(self, method: str, params: dict | None = None) -> dict:
        return self.browser.send(method, params, self.session)

    def open(self, url: str) -> int:
        """Navigate and wait for the load event; returns the index in `events` where this page starts."""
        start = len(self.browser.events)
        self.call("Page.navigate", {"url": url})
        self.browser.wait_for("Page.loadEventFired", since=start)
        return start

    def js(self, expression: str):
        answer = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        assert "exceptionDetails" not in answer, answer["exceptionDetails"]
        return answer["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click (pressed and released) at the middle of the element, scrolled into view."""
        box = self.js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.scrollIntoView("
            "{block: 'center'}); const r = e.getBoundingClientRect(); return [r.x + r.width / 2, "
            "r.y + r.height / 2]; })()"
        )
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call(
                "Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left", "clickCount": 1}
            )

    def errors(self, since: int) -> list:
        """Console errors, uncaught exceptions and error log entries of this session since `since`."""
        found = []
        for event in self.browser.events[since:]:
            if event.get("sessionId") != self.session:
                continue
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(params["exceptionDetails"].get("text", "exception"))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append(params["entry"].get("text", ""))
        return found

    def requested(self, since: int) -> list:
        return [
            e["params"]["request"]["url"]
            for e in self.browser.events[since:]
            if e.get("method") == "Network.requestWillBeSent" and e.get("sessionId") == self.session
        ]

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"})["data"])


@pytest.fixture(scope="module")
def tab(tmp_path_factory):
    browser = Browser(find_browser(), tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield Tab(browser)
    finally:
        browser.close()


def keep(png: bytes, name: str) -> None:
    where = os.environ.get("MLBENCH_BROWSER_SHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        (Path(where) / name).write_bytes(png)


def pixels(png: bytes):
    from matplotlib import image

    return image.imread(io.BytesIO(png), format="png")


def column(tab: Tab, table: str, index: int) -> list:
    return tab.js(
        f"Array.from(document.querySelectorAll({json.dumps(table + ' tbody tr')}))"
        f".map(r => r.cells[{index}].textContent)"
    )


def test_harness_sees_console_errors(tab):
    """The error collector itself: a page that logs an error and throws is caught (so a clean page means clean)."""
    start = tab.open("data:text/html,<script>console.error('boom'); undefined_function();</script>")
    errors = tab.errors(start)
    assert any("boom" in e for e in errors) and any("undefined_function" in e or "Uncaught" in e for e in errors)


def test_reference_cpu_report_in_a_browser(tab, tmp_path):
    out = tmp_path / "report"
    build_report([str(REFERENCE_RUN)], out_dir=str(out))
    page = out / "report.html"
    assert "http://" not in page.read_text() and "https://" not in page.read_text()
    start = tab.open(page.as_uri())

    assert tab.errors(start) == []
    assert all(url.startswith(("file:", "data:")) for url in tab.requested(start)), tab.requested(start)
    assert tab.js("document.getElementById('verdict').textContent") == "PASS"
    banner = tab.js("document.getElementById('banner').innerText")
    assert "1 judged" in banner and "informational" in banner
    assert tab.js("document.getElementById('banner').className") == "banner v-PASS"
    links = tab.js("Array.from(document.querySelectorAll('nav a')).map(a => a.getAttribute('href'))")
    assert {"#headline", "#needs-attention", "#storage", "#not-measured", "#plots"} <= set(links)
    assert all(tab.js(f"!!document.querySelector('{href}')") for href in links)  # every link has its section
    assert tab.js("document.querySelectorAll('#plots img').length") == 4
    assert tab.js("Array.from(document.querySelectorAll('#plots img')).every(i => i.complete && i.naturalWidth > 0)")

    gbps = "#storage th:nth-child(4) button"
    before = column(tab, "#storage", 3)
    tab.click(gbps)
    ascending = column(tab, "#storage", 3)
    assert sorted(ascending) == sorted(before) and ascending != before
    assert [float(v) for v in ascending] == sorted(float(v) for v in before)
    assert tab.js("document.querySelector('#storage th:nth-child(4)').getAttribute('aria-sort')") == "ascending"
    tab.click(gbps)
    assert [float(v) for v in column(tab, "#storage", 3)] == sorted((float(v) for v in before), reverse=True)
    assert tab.errors(start) == []

    tab.js("window.scrollTo(0, 0)")
    png = tab.screenshot()
    keep(png, "report-cpu.png")
    image = pixels(png)
    assert image.shape[:2] == (VIEWPORT[1], VIEWPORT[0])
    rgb = image[..., :3]
    assert rgb.std() > 0.05 and len({tuple(p) for p in rgb[::7, ::7].reshape(-1, 3).tolist()}) > 20  # not blank
    banner_rgb = [round(255 * c) for c in rgb[8, 8]]  # top left: the banner's PASS green (#e2f4e2)
    assert banner_rgb == [0xE2, 0xF4, 0xE2], banner_rgb


def test_failing_run_banner_and_verdict_sort(tab, tmp_path):
    from test_report_cli import small_run

    run = small_run(tmp_path)
    build_report([str(run)], out_dir=str(tmp_path / "out"), plots=False)
    start = tab.open((tmp_path / "out" / "report.html").as_uri())
    assert tab.errors(start) == []
    assert tab.js("document.getElementById('verdict').textContent") == "FAIL"
    assert tab.js("document.getElementById('banner').className") == "banner v-FAIL"
    mamf = "#mamf-matmul-tflops"
    verdicts = column(tab, mamf, 11)
    tab.click(f"{mamf} th:nth-child(12) button")
    tab.click(f"{mamf} th:nth-child(12) button")  # descending: by severity, PASS first and FAIL-most last
    rank = {"FAIL": 0, "INCOMPLETE": 1, "WARN": 2, "INFO": 3, "PASS": 4}
    assert column(tab, mamf, 11) == sorted(verdicts, key=rank.get, reverse=True)
    tab.js("window.scrollTo(0, 0)")
    png = tab.screenshot()
    keep(png, "report-fail.png")
    assert pixels(png)[..., :3].std() > 0.05
