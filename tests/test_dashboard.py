"""The dashboard (/ui) in a real browser: Debian's Chromium, headless, driven through its
chromedriver by Selenium. Screenshots go to artifacts/dashboard/ (EMULATORS_ARTIFACTS to
move it), kept by CI."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from emulators.testing import RunningFarm

ROOT = Path(__file__).resolve().parents[1]
SHOTS = Path(os.environ.get("EMULATORS_ARTIFACTS", ROOT / "artifacts")) / "dashboard"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def chromium() -> Iterator[webdriver.Chrome]:
    """One browser for the module (starting Chromium takes seconds); each test gets it with
    its log read empty (``browser``)."""
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        pytest.fail("chromium and chromedriver are needed (.ci/run installs chromium and "
                    "chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,800",
                "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(chromium: webdriver.Chrome) -> Iterator[webdriver.Chrome]:
    chromium.get_log("browser")  # what an earlier test left
    yield chromium
    chromium.get("about:blank")  # ends the page's journal stream before its farm stops


@pytest.fixture
def farm(farm_factory: Callable[..., RunningFarm]) -> RunningFarm:
    return farm_factory("default")


def shot(driver: webdriver.Chrome, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def errors_in_console(driver: webdriver.Chrome) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def open_page(driver: webdriver.Chrome, farm: RunningFarm) -> None:
    driver.get(farm.control_url.removesuffix("/v1") + "/ui")
    WebDriverWait(driver, 15).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#members tr[data-member='instar-camera']"))


def test_the_page_loads_shows_every_member_and_logs_no_error(browser: webdriver.Chrome,
                                                             farm: RunningFarm) -> None:
    open_page(browser, farm)
    names = {row.get_attribute("data-member")
             for row in browser.find_elements(By.CSS_SELECTOR, "#members tbody tr")}
    assert names == set(farm.members)
    browser.find_element(By.ID, "member-search").send_keys("instar")
    shown = browser.find_elements(By.CSS_SELECTOR, "#members tbody tr")
    assert [r.get_attribute("data-member") for r in shown] == ["instar-camera"]
    shot(browser, "members")
    assert errors_in_console(browser) == []


def test_a_curl_request_appears_in_the_journal_without_a_reload(browser: webdriver.Chrome,
                                                                farm: RunningFarm) -> None:
    open_page(browser, farm)
    instar = farm["instar-camera"]
    creds = instar.credentials
    url = f"{instar.url}/param.cgi?cmd=getserverinfo&user={creds['user']}&pwd={creds['password']}"
    subprocess.run(["curl", "-s", "-o", "/dev/null", url], check=True, timeout=20)
    sent = time.monotonic()
    WebDriverWait(browser, 5, poll_frequency=0.05).until(lambda d: any(
        "/param.cgi" in row.text and "instar-camera" in row.text
        for row in d.find_elements(By.CSS_SELECTOR, "#journal tbody tr")))
    assert time.monotonic() - sent < 1.5  # "within a second", plus the browser's own poll
    shot(browser, "journal")
    assert errors_in_console(browser) == []


def test_a_fault_added_through_the_form_is_met_by_a_real_client(browser: webdriver.Chrome,
                                                                farm: RunningFarm) -> None:
    open_page(browser, farm)
    Select(browser.find_element(By.ID, "fault-type")).select_by_visible_text("status")
    member = browser.find_element(By.ID, "fault-member")
    member.clear()
    member.send_keys("instar-camera")
    browser.find_element(By.ID, "fault-status").send_keys("503")
    browser.find_element(By.ID, "fault-times").send_keys("1")
    browser.find_element(By.CSS_SELECTOR, "#fault-form button[type=submit]").click()
    WebDriverWait(browser, 5).until(lambda d: "status on instar-camera" in
                                    d.find_element(By.ID, "faults").text)
    shot(browser, "fault")
    instar = farm["instar-camera"]
    status = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                             f"{instar.url}/param.cgi?cmd=getserverinfo"],
                            capture_output=True, text=True, timeout=20, check=True).stdout
    assert status == "503"


def test_the_clock_buttons_move_the_farm_clock(browser: webdriver.Chrome,
                                               farm: RunningFarm) -> None:
    open_page(browser, farm)
    browser.find_element(By.ID, "clock-freeze").click()
    WebDriverWait(browser, 5).until(lambda d: "(frozen)" in d.find_element(By.ID, "clock").text)
    before = farm.clock.time()
    browser.find_element(By.ID, "clock-advance").click()  # 3600 s by default
    WebDriverWait(browser, 5).until(lambda d: farm.clock.time() - before >= 3600)
    browser.find_element(By.ID, "clock-reset").click()
    WebDriverWait(browser, 5).until(lambda d: not farm.clock.frozen)


def test_with_a_token_the_page_asks_for_it_and_nothing_is_reachable_without(
        browser: webdriver.Chrome, farm_factory: Callable[..., RunningFarm]) -> None:
    farm = farm_factory({"name": "tokened", "control": {"token": "s3cret-token"},
                         "emulators": [{"name": "instar-camera", "kind": "instar-camera"}]})
    base = farm.control_url.removesuffix("/v1")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(base + "/v1/emulators", timeout=10)
    assert refused.value.code == 401
    refused.value.close()
    browser.get(base + "/ui")
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "token").is_displayed())
    browser.find_element(By.ID, "token").send_keys("s3cret-token")
    browser.find_element(By.CSS_SELECTOR, "#token-form button").click()
    WebDriverWait(browser, 10).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#members tr[data-member='instar-camera']"))
    shot(browser, "token")


def test_the_journal_stream_is_server_sent_events_with_resume(farm: RunningFarm) -> None:
    """GET /v1/journal/stream as curl reads it: an event per new entry, its seq the id;
    Last-Event-ID resumes after it; filters as for GET /v1/journal."""
    base = farm.control_url
    stream = subprocess.Popen(["curl", "-sN", "--max-time", "5",
                               f"{base}/journal/stream?member=instar-camera"],
                              stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        for url in (f"{farm['instar-camera'].url}/param.cgi?cmd=getserverinfo",
                    f"{farm['acti-camera'].url}/"):
            subprocess.run(["curl", "-s", "-o", "/dev/null", url], check=True, timeout=10)
        out, _ = stream.communicate(timeout=15)
    finally:
        stream.kill()
    events = [block for block in out.split("\n\n") if "data: " in block]
    assert len(events) == 1  # the ACTi request is filtered out
    seq = int(events[0].split("id: ")[1].split("\n")[0])
    assert '"member": "instar-camera"' in events[0] and '"path": "/param.cgi"' in events[0]
    resumed = subprocess.run(["curl", "-sN", "--max-time", "2", "-H", f"Last-Event-ID: {seq - 1}",
                              f"{base}/journal/stream?member=instar-camera"],
                             capture_output=True, text=True, timeout=15).stdout
    assert f"id: {seq}\n" in resumed


def test_certificates_are_judged_on_the_farm_clock(farm: RunningFarm) -> None:
    """GET /v1/certificates: EnOS's roots and its bound device certificate, valid now and
    expired once the farm clock passes their end."""
    import json

    def listing() -> list[dict]:  # type: ignore[type-arg]
        with urllib.request.urlopen(f"{farm.control_url}/certificates?member=enos",
                                    timeout=10) as reply:
            return json.load(reply)["certificates"]  # type: ignore[no-any-return]

    now = listing()
    device = [c for c in now if c["role"].startswith("device certificate of zBrjuW7q")]
    assert len(device) == 1 and device[0]["validity"] == "valid"
    assert {c["role"] for c in now if c["ca"]} == {"RSA root CA", "ECC root CA"}
    farm.clock.advance(20 * 365 * 86400)
    assert {c["validity"] for c in listing()} == {"expired"}
