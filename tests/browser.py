"""Headless Debian chromium driven by Selenium, for the webmail's browser tests and bench/webmail.py.

In:   the Debian packages ``chromium`` (``/usr/bin/chromium``) and ``chromium-driver``
      (``/usr/bin/chromedriver``). The app itself is built by ``make webmail`` (which ``make test``
      and ``make bench`` run first) and served by the local stack's front.
Out:  :func:`ensure_chromium` installs both packages when missing (``apt-get update`` first, as
      root); :func:`start_chrome` a
      :class:`Browser`: one headless chromium through chromedriver, both paths given explicitly
      (Selenium's Service with the driver's path, Options with the browser's), so Selenium Manager
      is never asked for a driver and nothing is downloaded; its console log collected
      (:meth:`Browser.console`, :meth:`Browser.csp_violations`), screenshots written into
      ``test-output/screenshots/`` (:meth:`Browser.screenshot`), waits on conditions with wide
      ceilings (:meth:`Browser.wait`); :class:`HitCounter`: loopback HTTP and HTTPS listeners that
      count every request a page makes to them (what a hostile message tries to load).
Fails: :class:`BrowserMissing` when chromium or its driver is missing and cannot be installed (not
      root, no apt-get). A wait past its ceiling raises Selenium's TimeoutException naming what it
      waited for.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import ssl
import subprocess
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "test-output" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PACKAGES = (("chromium", CHROMIUM), ("chromium-driver", CHROMEDRIVER))
WAIT = 60.0  # liveness ceiling for one condition in the browser (a loaded 2-core machine; not a timing target)


class BrowserMissing(RuntimeError):
    """chromium or chromium-driver is not installed and cannot be (the message says what to run)."""


def ensure_chromium() -> tuple[str, str]:
    """(browser, driver) paths; ``apt-get update && apt-get install -y chromium chromium-driver`` when missing."""
    missing = [pkg for pkg, path in PACKAGES if not os.access(path, os.X_OK)]
    if not missing:
        return CHROMIUM, CHROMEDRIVER
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise BrowserMissing(f"{', '.join(missing)} not installed and this is not root with apt-get: "
                             f"run apt-get install -y chromium chromium-driver")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"]):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
        if r.returncode != 0:
            raise BrowserMissing(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr[-2000:]}")
    still = [path for _, path in PACKAGES if not os.access(path, os.X_OK)]
    if still:
        raise BrowserMissing(f"apt-get installed chromium and chromium-driver but {still} are missing")
    return CHROMIUM, CHROMEDRIVER


@contextlib.contextmanager
def _no_selenium_manager():
    """Selenium Manager is skipped when the Service names the driver; this makes any attempt fail too."""
    saved = {k: os.environ.get(k) for k in ("SE_MANAGER_PATH", "SE_OFFLINE")}
    os.environ["SE_MANAGER_PATH"] = "/nonexistent/selenium-manager"
    os.environ["SE_OFFLINE"] = "true"
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class Browser:
    """One chromium session: the WebDriver, its collected console log, waits and screenshots."""

    def __init__(self, driver, shots: Path = SCREENSHOTS):
        self.driver = driver
        self.shots = shots
        self.log: list[dict] = []

    # --- console -----------------------------------------------------------------------------
    def console(self) -> list[dict]:
        """Every console entry so far (chromedriver hands each out once; they are kept here)."""
        self.log += self.driver.get_log("browser")
        return list(self.log)

    def mark(self) -> int:
        """The console's length now: pass it to :meth:`csp_violations` to see only what came after."""
        return len(self.console())

    def csp_violations(self, since: int = 0) -> list[str]:
        return [e["message"] for e in self.console()[since:] if "Content Security Policy" in e["message"]]

    # --- waits and elements ------------------------------------------------------------------
    def wait(self, condition: Callable, what: str, ceiling: float = WAIT, tick: Callable[[], object] | None = None):
        """Poll ``condition(driver)`` until it is truthy (``tick`` runs first each round, e.g. the
        stack's drain); Selenium's TimeoutException names ``what`` past ``ceiling`` seconds."""
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        def check(d):
            if tick is not None:
                tick()
            try:
                return condition(d)
            except StaleElementReferenceException:  # the app re-rendered between find and read
                return False

        return WebDriverWait(self.driver, ceiling, poll_frequency=0.1).until(check, f"not within {ceiling} s: {what}")

    def by_testid(self, testid: str, within=None) -> list:
        from selenium.webdriver.common.by import By

        return (within or self.driver).find_elements(By.CSS_SELECTOR, f'[data-testid="{testid}"]')

    def one(self, testid: str, ceiling: float = WAIT, visible: bool = True):
        """The first ``data-testid`` element, once present (and displayed)."""

        def find(_d):
            found = [e for e in self.by_testid(testid) if not visible or e.is_displayed()]
            return found[0] if found else False

        return self.wait(find, f'[data-testid="{testid}"]', ceiling)

    def gone(self, testid: str, ceiling: float = WAIT) -> None:
        self.wait(lambda _d: not [e for e in self.by_testid(testid) if e.is_displayed()], f"{testid} gone", ceiling)

    def screenshot(self, name: str) -> Path:
        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def quit(self) -> None:
        with contextlib.suppress(Exception):
            self.driver.quit()


def start_chrome(width: int = 1280, height: int = 900, log_path: Path | None = None) -> Browser:
    """Headless chromium through chromedriver, both from Debian, the paths given explicitly."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = ensure_chromium()
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox",  # root in a container: chromium's own sandbox needs user namespaces
                "--disable-dev-shm-usage", "--disable-gpu", f"--window-size={width},{height}",
                # nothing but the page's own requests: no component updates, sync, metrics or safe browsing
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-default-apps", "--no-first-run", "--no-default-browser-check",
                "--metrics-recording-only", "--disable-features=Translate,OptimizationHints,MediaRouter",
                "--lang=en-US"):
        opts.add_argument(arg)
    opts.accept_insecure_certs = True  # HitCounter's https listener has a throwaway certificate
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=driver_path, log_output=str(log_path) if log_path else subprocess.DEVNULL)
    with _no_selenium_manager():
        driver = webdriver.Chrome(service=service, options=opts)
    driver.set_page_load_timeout(WAIT)
    return Browser(driver)


class HitCounter:
    """HTTP and HTTPS on 127.0.0.1 (ephemeral ports) answering every request with a 1x1 GIF (or empty
    CSS/HTML) and counting it by path: ``hits`` (a Counter), ``url(path, tls=True)``."""

    GIF = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")

    def __init__(self):
        self.hits: Counter = Counter()
        self._lock = threading.Lock()
        self._servers: list[ThreadingHTTPServer] = []
        self.http_port = self.https_port = 0

    def start(self) -> HitCounter:
        import trustme

        counter = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                with counter._lock:
                    counter.hits[self.path.split("?", 1)[0]] += 1
                body, ctype = (b"", "text/css") if self.path.endswith(".css") else (counter.GIF, "image/gif")
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Access-Control-Allow-Origin", "*")
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_HEAD = _answer

            def log_message(self, *_a):
                pass

        plain = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        secure = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ca = trustme.CA()
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
        secure.socket = ctx.wrap_socket(secure.socket, server_side=True)
        for s in (plain, secure):
            s.daemon_threads = True
            threading.Thread(target=s.serve_forever, name="hit-counter", daemon=True).start()
            self._servers.append(s)
        self.http_port, self.https_port = plain.server_address[1], secure.server_address[1]
        return self

    def url(self, path: str, tls: bool = True) -> str:
        return f"{'https' if tls else 'http'}://127.0.0.1:{self.https_port if tls else self.http_port}{path}"

    def total(self) -> int:
        with self._lock:
            return sum(self.hits.values())

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.hits)

    def stop(self) -> None:
        for s in self._servers:
            s.shutdown()
            s.server_close()

