"""The dashboard (/ui) in a real browser: Debian's Chromium, headless, driven through its
chromedriver by Selenium. Screenshots go to artifacts/dashboard/ (EMULATORS_ARTIFACTS to
move it), kept by CI."""

from __future__ import annotations

import json
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
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from emulators.control import dashboard
from emulators.testing import RunningFarm, ShardedFarm
from tests.ways import WAYS, both_ways

ROOT = Path(__file__).resolve().parents[1]
SHOTS = Path(os.environ.get("EMULATORS_ARTIFACTS", ROOT / "artifacts")) / "dashboard"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
AnyFarm = RunningFarm | ShardedFarm


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


@pytest.fixture(scope="module")
def sharded_default() -> Iterator[ShardedFarm]:
    """The default farm on four shards, the camera away from the servers, started once."""
    yield from both_ways("default", 4, across=["instar-camera"])


@pytest.fixture(params=WAYS)
def either(request: pytest.FixtureRequest,
           farm_factory: Callable[..., RunningFarm]) -> AnyFarm:
    """The default farm on one process (a new one), or on four shards (the module's, back at
    its scenario: members reset, journal, faults and clock cleared): the page is the same."""
    if request.param == 1:
        return farm_factory("default")
    farm: ShardedFarm = request.getfixturevalue("sharded_default")
    farm.reset()
    farm.clear_faults()
    farm.reset_clock()
    farm.clear_journal()
    return farm


def shot(driver: webdriver.Chrome, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def errors_in_console(driver: webdriver.Chrome) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def open_page(driver: webdriver.Chrome, farm: AnyFarm) -> None:
    driver.get(farm.control_url.removesuffix("/v1") + "/ui")
    WebDriverWait(driver, 15).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#members tr[data-member='instar-camera']"))


def test_the_page_loads_shows_every_member_and_logs_no_error(
        browser: webdriver.Chrome, either: AnyFarm) -> None:
    farm = either
    open_page(browser, farm)
    names = {row.get_attribute("data-member")
             for row in browser.find_elements(By.CSS_SELECTOR, "#members tbody tr")}
    assert names == set(farm.members)
    browser.find_element(By.ID, "member-search").send_keys("instar")
    shown = browser.find_elements(By.CSS_SELECTOR, "#members tbody tr")
    assert [r.get_attribute("data-member") for r in shown] == ["instar-camera"]
    shot(browser, "members")
    assert errors_in_console(browser) == []


def test_a_curl_request_appears_in_the_journal_without_a_reload(
        browser: webdriver.Chrome, either: AnyFarm) -> None:
    farm = either
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


def test_a_fault_added_through_the_form_is_met_by_a_real_client(
        browser: webdriver.Chrome, either: AnyFarm) -> None:
    farm = either
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


def test_the_clock_buttons_move_the_farm_clock(
        browser: webdriver.Chrome, either: AnyFarm) -> None:
    farm = either
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
    stream = subprocess.Popen(["curl", "-sN", "--max-time", "10",  # the farm ends it first
                               f"{base}/journal/stream?member=instar-camera&seconds=2.5"],
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
    resumed = subprocess.run(["curl", "-sN", "--max-time", "10", "-H", f"Last-Event-ID: {seq - 1}",
                              f"{base}/journal/stream?member=instar-camera&seconds=1"],
                             capture_output=True, text=True, timeout=15).stdout
    assert f"id: {seq}\n" in resumed


def test_a_stream_from_the_last_seq_of_a_query_misses_nothing_recorded_between(
        either: AnyFarm) -> None:
    """What the page does: read the journal, then follow it from the ``last_seq`` that read
    gave. A request made between the two is streamed (the stream's own "now" would pass it
    over: on shards it is pulled in as the stream opens, and the page missed it)."""
    farm = either
    first = api(farm, "GET", "/v1/journal?member=instar-camera&limit=100")
    assert first["entries"] == [] and isinstance(first["last_seq"], int)
    instar_cgi(farm, "cmd=getserverinfo")  # before the stream opens
    events = subprocess.run(
        ["curl", "-sN", "--max-time", "10", f"{farm.control_url}/journal/stream?"
         f"member=instar-camera&after_seq={first['last_seq']}&max_rate=25&seconds=1"],
        capture_output=True, text=True, timeout=15).stdout
    assert '"path": "/param.cgi"' in events and "event: skipped" not in events
    later = api(farm, "GET", "/v1/journal?member=acti-camera")
    assert later["last_seq"] >= int(events.split("id: ")[1].split("\n")[0])


def test_certificates_are_judged_on_the_farm_clock(farm: RunningFarm) -> None:
    """GET /v1/certificates: EnOS's roots and its bound device certificate, valid now and
    expired once the farm clock passes their end."""

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


# -- the page, further ------------------------------------------------------------------------
def curl(url: str, *args: str) -> str:
    return subprocess.run(["curl", "-sS", *args, url], capture_output=True, text=True,
                          timeout=20, check=True).stdout


def test_no_page_of_any_origin_may_frame_the_dashboard(farm: RunningFarm) -> None:
    """Every file of the dashboard, as curl reads its headers: framing refused both ways a
    browser reads it, beside the policy the page already had."""
    base = farm.control_url.removesuffix("/v1")
    for route in dashboard.FILES:
        status, *lines = curl(base + route, "-D", "-", "-o", "/dev/null").lower().splitlines()
        assert status.startswith("http/1.1 200"), (route, status)
        assert "x-frame-options: deny" in lines, route
        [policy] = [line.partition(":")[2] for line in lines
                    if line.startswith("content-security-policy:")]
        directives = {d.strip() for d in policy.split(";")}
        assert {"frame-ancestors 'none'", "default-src 'self'", "object-src 'none'"} <= \
            directives, (route, policy)


def api(farm: AnyFarm, method: str, route: str) -> dict:  # type: ignore[type-arg]
    request = urllib.request.Request(farm.control_url.removesuffix("/v1") + route, method=method,
                                     data=b"{}" if method == "POST" else None,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.load(reply)  # type: ignore[no-any-return]


def instar_cgi(farm: AnyFarm, query: str) -> str:
    instar = farm["instar-camera"]
    creds = instar.credentials
    return curl(f"{instar.url}/param.cgi?{query}&user={creds['user']}&pwd={creds['password']}")


def jpeg_size(data: bytes) -> tuple[int, int]:
    """Width and height from a JPEG's start-of-frame segment."""
    assert data[:2] == b"\xff\xd8", "not a JPEG"
    i = 2
    while i < len(data):
        marker, length = data[i + 1], int.from_bytes(data[i + 2:i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            return (int.from_bytes(data[i + 7:i + 9], "big"),
                    int.from_bytes(data[i + 5:i + 7], "big"))
        i += 2 + length
    raise AssertionError("no start-of-frame segment")


def shown_images(driver: webdriver.Chrome) -> list[dict]:  # type: ignore[type-arg]
    """The received-files view's images that the browser decoded, with their sizes."""
    return driver.execute_script("""
        return [...document.querySelectorAll('#files img')].map((img) => ({
            path: img.closest('li').dataset.path, width: img.naturalWidth,
            height: img.naturalHeight, complete: img.complete,
            server: img.closest('section').dataset.server}));""")


def test_an_uploaded_snapshot_is_shown_as_an_image_and_its_chain_whole(
        browser: webdriver.Chrome, farm: RunningFarm) -> None:
    """The camera's testftp: the JPEG it uploaded appears in the files view, decoded by the
    browser, unreloaded; its correlation id shows the HTTP request, the FTPS login and the
    upload as one chain; an entry opens with its excerpts, the password masked."""
    open_page(browser, farm)
    assert 'result="0"' in instar_cgi(farm, "cmd=testftp")
    WebDriverWait(browser, 10, poll_frequency=0.1).until(
        lambda d: any(i["width"] > 0 and i["server"] == "ftp" for i in shown_images(d)))
    [image] = [i for i in shown_images(browser) if i["server"] == "ftp"]
    [received] = farm["ftp"].call(lambda m: m.received_files())
    assert image["path"] == received["path"] and received["path"].endswith("Test-Snapshot.jpeg")
    with urllib.request.urlopen(f"{farm.control_url}/servers/ftp/files/{received['user']}/"
                                f"{received['path']}", timeout=10) as reply:
        assert (image["width"], image["height"]) == jpeg_size(reply.read())
    shot(browser, "files")

    [request] = [e for e in farm.journal(member="instar-camera", path="/param.cgi")
                 if ["cmd", "testftp"] in e["query"]]
    testftp = WebDriverWait(browser, 5).until(
        lambda d: d.find_element(By.CSS_SELECTOR, f"#journal tr[data-seq='{request['seq']}']"))
    testftp.find_element(By.CSS_SELECTOR, "td:nth-child(9) button").click()
    WebDriverWait(browser, 5).until(lambda d: "Chain" in d.find_element(By.ID, "journal-mode").text)
    rows = browser.find_elements(By.CSS_SELECTOR, "#journal tbody tr")
    events = {(r.find_element(By.CSS_SELECTOR, "td:nth-child(3)").text,
               r.find_element(By.CSS_SELECTOR, "td:nth-child(5)").text) for r in rows}
    assert {("instar-camera", "request"), ("ftp", "login"), ("ftp", "upload")} <= events
    shot(browser, "chain")

    browser.find_element(By.CSS_SELECTOR, f"#journal tr[data-seq='{request['seq']}'] "
                                          "td:first-child button").click()
    meta = WebDriverWait(browser, 5).until(
        lambda d: d.find_element(By.ID, "detail-meta") if d.find_element(By.ID, "detail")
        .is_displayed() else None)
    assert "query cmd=testftp" in meta.text
    assert "query pwd=***" in meta.text and "instar" not in meta.text.split("query pwd=")[1][:8]
    assert browser.find_element(By.ID, "detail-reply").text.startswith('cmd="testftp";')
    browser.switch_to.active_element.send_keys(Keys.ESCAPE)  # the dialog's close, by keyboard
    WebDriverWait(browser, 5).until(lambda d: not d.find_element(By.ID, "detail").is_displayed())
    browser.find_element(By.CSS_SELECTOR, "button[aria-label='show the state of ftp']").click()
    state = WebDriverWait(browser, 5).until(
        lambda d: d.find_element(By.ID, "detail-meta").text if d.find_element(By.ID, "detail")
        .is_displayed() else None)
    assert json.loads(state)["received"][0]["path"] == received["path"]
    browser.find_element(By.ID, "detail-close").click()
    assert errors_in_console(browser) == []


def test_the_alarm_button_uploads_snapshots_shown_as_images(browser: webdriver.Chrome,
                                                            farm: RunningFarm) -> None:
    assert '"200"' in instar_cgi(farm, "cmd=setftpaction&type=snap&enable=1&interval=5")
    assert '"200"' in instar_cgi(farm, "cmd=setftpactionattr&snapcount=2")
    open_page(browser, farm)
    browser.find_element(By.CSS_SELECTOR,
                         "#members tr[data-member='instar-camera'] button[aria-label^='trigger']"
                         ).click()
    WebDriverWait(browser, 10).until(
        lambda d: "2 snapshot(s) uploaded" in d.find_element(By.ID, "status").text)
    WebDriverWait(browser, 10, poll_frequency=0.1).until(
        lambda d: len([i for i in shown_images(d) if i["width"] > 0]) == 2)
    paths = sorted(i["path"] for i in shown_images(browser))
    assert paths == sorted(f["path"] for f in farm["ftp"].call(lambda m: m.received_files()))
    assert all(p.split("/")[-1].startswith("A_") and p.endswith(".jpeg") for p in paths)
    assert errors_in_console(browser) == []


def test_a_clock_move_marks_a_certificate_expired(browser: webdriver.Chrome,
                                                  farm: RunningFarm) -> None:
    open_page(browser, farm)

    def validity(d: webdriver.Chrome) -> dict[str, list[str]]:
        """EnOS's rows, role -> [data-validity, the words shown], read in one go (the table is
        drawn again whenever the clock moves)."""
        return d.execute_script("""return Object.fromEntries([...document.querySelectorAll(
            "#certificates tr[data-member='enos']")].map((r) => [r.cells[1].textContent,
            [r.dataset.validity, r.cells[6].textContent]]));""")

    WebDriverWait(browser, 10).until(lambda d: validity(d))
    device = next(role for role in validity(browser) if role.startswith("device certificate"))
    assert validity(browser)[device] == ["valid", "valid"]
    browser.find_element(By.ID, "clock-at").send_keys("2100-01-01T00:00:00Z")
    browser.find_element(By.CSS_SELECTOR, "#clock-set-form button").click()
    WebDriverWait(browser, 10).until(lambda d: validity(d)[device] == ["expired", "EXPIRED"])
    assert "2100-01-01 00:00" in browser.find_element(By.ID, "clock").text
    assert abs(farm.clock.time() - 4102444800) < 60
    shot(browser, "certificates")
    assert errors_in_console(browser) == []


def test_snapshots_and_resets_from_the_page(
        browser: webdriver.Chrome, either: AnyFarm) -> None:
    """Save a snapshot, change the camera, restore: the change is gone; change it again and
    reset the member, then the farm: back to the scenario; delete the snapshot."""
    farm = either
    def ftp_port() -> str:
        return instar_cgi(farm, "cmd=getftpattr").split('ft_port="')[1].split('"')[0]

    original = ftp_port()
    open_page(browser, farm)
    browser.find_element(By.ID, "snapshot-name").send_keys("before-change")
    browser.find_element(By.CSS_SELECTOR, "#snapshot-form button").click()
    WebDriverWait(browser, 10).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#snapshots li[data-snapshot='before-change']"))
    assert '"200"' in instar_cgi(farm, "cmd=setftpattr&ft_port=2121")
    assert ftp_port() == "2121"
    browser.find_element(By.CSS_SELECTOR, "button[aria-label='restore snapshot before-change']"
                         ).click()
    WebDriverWait(browser, 10).until(lambda d: "restored" in d.find_element(By.ID, "status").text)
    assert ftp_port() == original

    assert '"200"' in instar_cgi(farm, "cmd=setftpattr&ft_port=2121")
    browser.find_element(By.CSS_SELECTOR, "button[aria-label='reset instar-camera']").click()
    WebDriverWait(browser, 10).until(
        lambda d: d.find_element(By.ID, "status").text == "instar-camera reset")
    assert ftp_port() == original
    assert '"200"' in instar_cgi(farm, "cmd=setftpattr&ft_port=2121")
    browser.find_element(By.ID, "farm-reset").click()
    WebDriverWait(browser, 10).until(
        lambda d: d.find_element(By.ID, "status").text.startswith("farm reset:"))
    assert ftp_port() == original

    # The farm reset re-renders the snapshot list once its answer is in: the button is found
    # again if it was replaced between finding and clicking.
    WebDriverWait(browser, 10, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: d.find_element(
            By.CSS_SELECTOR, "button[aria-label='delete snapshot before-change']").click()
        or True)
    WebDriverWait(browser, 10).until(lambda d: not d.find_elements(By.CSS_SELECTOR, "#snapshots li"))
    assert api(farm, "GET", "/v1/snapshots")["snapshots"] == []
    shot(browser, "snapshots")
    assert errors_in_console(browser) == []


def test_the_fault_form_shows_each_faults_own_parameters(browser: webdriver.Chrome,
                                                         farm: RunningFarm) -> None:
    open_page(browser, farm)

    def fields() -> list[str]:
        return [i.get_attribute("name") for i in
                browser.find_elements(By.CSS_SELECTOR, "#fault-parameters input")]

    kinds = Select(browser.find_element(By.ID, "fault-type"))
    kinds.select_by_visible_text("latency")
    assert fields() == ["latency_ms"]
    kinds.select_by_visible_text("mqtt_refuse")
    assert fields() == ["connack"]
    kinds.select_by_visible_text("throttle")
    assert fields() == ["bytes_per_second"]
    assert "FTP, SFTP: slow transfers" in browser.find_element(By.ID, "fault-sees").text
    kinds.select_by_visible_text("mqtt_refuse")
    browser.find_element(By.ID, "fault-connack").send_keys("9")  # outside 1..5
    browser.find_element(By.CSS_SELECTOR, "#fault-form button[type=submit]").click()
    WebDriverWait(browser, 5).until(
        lambda d: "fault refused: connack" in d.find_element(By.ID, "status").text)
    assert api(farm, "GET", "/v1/faults")["faults"] == []


def test_the_traffic_chart_shows_the_busiest_member(browser: webdriver.Chrome,
                                                    farm: RunningFarm) -> None:
    for _ in range(30):
        instar_cgi(farm, "cmd=getserverinfo")
    open_page(browser, farm)
    WebDriverWait(browser, 10).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#rates tbody tr"))
    first = browser.find_element(By.CSS_SELECTOR, "#rates tbody tr")
    assert first.get_attribute("data-member") == "instar-camera"
    assert float(first.find_element(By.CSS_SELECTOR, "td:nth-child(2)").text) >= 0.5  # 30/60 s
    bars = first.find_elements(By.CSS_SELECTOR, "svg rect")
    assert len(bars) == 30  # 5 minutes of 10 s buckets
    assert "instar-camera: 30 entries in the last minute" in first.find_element(
        By.CSS_SELECTOR, "svg title").get_attribute("textContent")


def test_a_1000_camera_fleet_is_one_row_until_searched(browser: webdriver.Chrome,
                                                       farm_factory: Callable[..., RunningFarm]
                                                       ) -> None:
    farm = farm_factory({"name": "fleet", "emulators": [
        {"name": "cam", "kind": "instar-camera", "count": 1000, "fleet": "ports",
         "host": "127.0.0.1", "port": 0}]})
    browser.get(farm.control_url.removesuffix("/v1") + "/ui")
    WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-fleet]"))
    assert browser.find_elements(By.CSS_SELECTOR, "#members tr[data-member]") == []
    toggle = browser.find_element(By.CSS_SELECTOR, "tr[data-fleet='cam'] button")
    assert "1000 instar-camera (1000 ok)" in toggle.text
    toggle.click()
    assert len(browser.find_elements(By.CSS_SELECTOR, "#members tr[data-member]")) == 200
    assert browser.find_element(By.ID, "members-more").text.startswith("800 more not shown")
    search = browser.find_element(By.ID, "member-search")
    search.send_keys("cam-0999")
    names = [r.get_attribute("data-member")
             for r in browser.find_elements(By.CSS_SELECTOR, "#members tr[data-member]")]
    assert names == ["cam-0999"]
    shot(browser, "fleet")
    assert errors_in_console(browser) == []


def contrast_failures(driver: webdriver.Chrome) -> list[str]:
    """Visible text whose colour is below 4.5:1 against the background it sits on (WCAG AA)."""
    return driver.execute_script("""
        const rgb = (c) => c.match(/[\\d.]+/g).map(Number);
        const lum = ([r, g, b]) => [r, g, b].map((v) => { v /= 255;
          return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
          .reduce((s, v, i) => s + v * [0.2126, 0.7152, 0.0722][i], 0);
        const background = (el) => {
          for (let e = el; e; e = e.parentElement) {
            const c = rgb(getComputedStyle(e).backgroundColor);
            if (c.length < 4 || c[3] > 0) return c.slice(0, 3);
          }
          return [255, 255, 255];
        };
        const bad = [];
        for (const el of document.querySelectorAll('body *')) {
          if (!el.offsetParent && el.tagName !== 'BODY') continue;
          const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
          if (!own) continue;
          const a = lum(rgb(getComputedStyle(el).color)), b = lum(background(el));
          const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
          if (ratio < 4.5) bad.push(`${el.tagName}#${el.id}.${el.className}: ${ratio.toFixed(2)}`);
        }
        return bad;""")


def test_the_page_is_accessible_and_fits_a_phone(browser: webdriver.Chrome,
                                                 farm: RunningFarm) -> None:
    """Every control has a name a screen reader reads, keyboard focus reaches the search and
    the buttons, text contrast is at least 4.5:1, and at a phone's width nothing but the
    tables' own scrollers is wider than the screen."""
    assert '"200"' in instar_cgi(farm, "cmd=setftpaction&type=snap&enable=1&interval=5")
    api(farm, "POST", "/v1/emulators/instar-camera/alarm")
    farm.clock.advance(20 * 365 * 86400)  # expired certificates: their marks are checked too
    open_page(browser, farm)
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.TAG_NAME, "body")
                                     .get_attribute("data-ready"))
    unnamed = browser.execute_script("""
        const named = (el) => el.labels?.length || el.getAttribute('aria-label')
          || (el.tagName === 'BUTTON' && el.textContent.trim());
        return [...document.querySelectorAll('input, select, button')]
          .filter((el) => !named(el)).map((el) => el.outerHTML.slice(0, 80));""")
    assert unnamed == []
    assert browser.execute_script("""return [...document.querySelectorAll('img')]
        .filter((i) => !i.alt).length""") == 0
    body = browser.find_element(By.TAG_NAME, "body")
    focused = []
    for _ in range(12):
        body.send_keys("\t") if not focused else browser.switch_to.active_element.send_keys("\t")
        focused.append(browser.switch_to.active_element.get_attribute("id")
                       or browser.switch_to.active_element.text)
    assert "member-search" in focused
    assert contrast_failures(browser) == []
    browser.set_window_size(390, 844)
    try:
        time.sleep(0.3)
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0
        shot(browser, "phone")
    finally:
        browser.set_window_size(1280, 800)
    assert errors_in_console(browser) == []


def test_the_stream_passes_over_what_its_rate_cannot_show(farm: RunningFarm) -> None:
    """max_rate: a burst beyond the rate gives the newest entries and a skipped event that
    counts the rest, which GET /v1/journal still holds."""
    stream = subprocess.Popen(["curl", "-sN", "--max-time", "3",
                               f"{farm.control_url}/journal/stream?max_rate=5"],
                              stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        instar = farm["instar-camera"]
        urls = [f"{instar.url}/param.cgi?cmd=getserverinfo&n={i}" for i in range(40)]
        subprocess.run(["curl", "-s", "-o", "/dev/null", *urls], check=True, timeout=20)
        out, _ = stream.communicate(timeout=15)
    finally:
        stream.kill()
    blocks = [b for b in out.split("\n\n") if "data: " in b]
    skipped = sum(json.loads(b.split("data: ")[1])["skipped"] for b in blocks
                  if b.startswith("event: skipped"))
    sent = [json.loads(b.split("data: ")[1]) for b in blocks if not b.startswith("event:")]
    assert skipped > 0 and len(sent) + skipped == 40
    assert sent[-1]["query"] == [["cmd", "getserverinfo"], ["n", "39"]]  # the newest is shown
    assert len(farm.journal(member="instar-camera")) == 40


def test_journal_rates_count_entries_and_durations_per_member(farm: RunningFarm) -> None:
    for _ in range(5):
        instar_cgi(farm, "cmd=getserverinfo")
    curl(f"{farm['acti-camera'].url}/")
    doc = api(farm, "GET", "/v1/journal/rates?minutes=1&bucket=20")
    assert doc["bucket_seconds"] == 20 and len(doc["members"]["instar-camera"]["entries"]) == 3
    assert sum(doc["members"]["instar-camera"]["entries"]) == 5
    assert sum(doc["members"]["acti-camera"]["entries"]) == 1
    [p95] = [v for v in doc["members"]["instar-camera"]["p95_ms"] if v is not None]
    durations = [e["duration_ms"] for e in farm.journal(member="instar-camera")]
    assert p95 == max(durations)  # 95th of five is the slowest
    assert api(farm, "GET", "/v1/journal/rates?member=acti*")["members"].keys() == {
        "acti-camera"}
    assert api(farm, "GET", "/v1/journal/rates?top=1")["members"].keys() == {"instar-camera"}
    status = curl(f"{farm.control_url}/journal/rates?minutes=0", "-o", "/dev/null", "-w",
                  "%{http_code}")
    assert status == "400"


def test_a_member_replaying_a_quirk_profile_says_so(
        browser: webdriver.Chrome, farm_factory: Callable[..., RunningFarm],
        tmp_path: Path) -> None:
    from tests.quirks.clients import doc_profiles

    profile = tmp_path / "device.yaml"
    profile.write_text(doc_profiles()["instar-camera"])
    farm = farm_factory({"version": 1, "name": "quirky", "emulators": [
        {"name": "instar-camera", "kind": "instar-camera", "port": 0,
         "quirks": str(profile)}]})
    described = farm.ready["emulators"][0]["quirks"]
    open_page(browser, farm)
    line = browser.find_element(By.CSS_SELECTOR,
                                "#members tr[data-member='instar-camera'] .quirks")
    assert line.text == f"quirks: {described['model']} {described['firmware']}"
    assert f"file: {profile}" in line.get_attribute("title")
    assert errors_in_console(browser) == []
