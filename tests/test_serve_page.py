"""fmnist-serve's page in a real headless browser (Debian's chromium and chromium-driver):
it loads, an upload of the ankle boot shows "Ankle boot" with its bar, and a screenshot of the
result is not blank."""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("starlette", reason="fmnist-serve needs the [serve] extra")
pytest.importorskip("uvicorn", reason="fmnist-serve needs the [serve] extra")
pytest.importorskip(
    "selenium", reason="the page test needs selenium (pip install selenium, in the [dev] extra)"
)

from serve_helpers import ANKLE_BOOT, start_server  # noqa: E402

CHROMIUM = next(
    filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
)
CHROMEDRIVER = shutil.which("chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
    "--window-size=900,900",
)
ACCENT = (0x2F, 0x6F, 0xDE)  # the bars' colour in static/index.html

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="the page test needs a browser: apt-get install chromium chromium-driver",
)


def _close(rgb: tuple[int, int, int], target: tuple[int, int, int]) -> bool:
    return max(abs(a - b) for a, b in zip(rgb, target, strict=True)) < 8


@pytest.fixture
def browser(tmp_path, monkeypatch):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not look for downloads
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def server():
    srv = start_server(["--workers", "1"])
    yield srv
    srv.stop()


def test_page_classifies_an_upload(server, browser, tmp_path):
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server.url + "/")
    assert browser.title == "fmnist-serve"
    WebDriverWait(browser, 20).until(  # the page asked GET /v1/model on load
        lambda d: "sha256" in d.find_element(By.ID, "model").text
    )
    browser.find_element(By.ID, "file").send_keys(str(ANKLE_BOOT))
    WebDriverWait(browser, 30).until(lambda d: "Ankle boot" in d.find_element(By.ID, "bars").text)
    rows = browser.find_elements(By.CSS_SELECTOR, "#bars .bar")
    assert len(rows) == 3 and rows[0].text.startswith("Ankle boot")
    assert "ms on the server" in browser.find_element(By.ID, "timing").text
    assert not browser.find_element(By.ID, "error").is_displayed()

    shot = tmp_path / "page.png"
    assert browser.save_screenshot(str(shot))
    image = Image.open(shot).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 1, "blank screenshot"
    accent = sum(n for n, rgb in colours if _close(rgb, ACCENT))
    assert accent > 500, "no result bar drawn"  # the top bar is ~99% of its track


def test_page_reports_a_bad_upload(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("this is text, not a picture")
    browser.get(server.url + "/")
    browser.find_element(By.ID, "file").send_keys(str(not_an_image))
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "error").is_displayed())
    assert "not an image" in browser.find_element(By.ID, "error").text


def test_page_asks_for_the_token_when_the_server_needs_one(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    token = "page-test-token-" + "y" * 20
    (tmp_path / "token").write_text(token + "\n")
    (tmp_path / "token").chmod(0o600)
    srv = start_server(["--workers", "1", "--token-file", str(tmp_path / "token")])
    try:
        browser.get(srv.url + "/")
        browser.find_element(By.ID, "file").send_keys(str(ANKLE_BOOT))
        WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "auth").is_displayed())
        assert "token" in browser.find_element(By.ID, "error").text
        browser.find_element(By.ID, "token").send_keys(token)
        browser.find_element(By.CSS_SELECTOR, "#auth button").click()
        WebDriverWait(browser, 30).until(
            lambda d: "Ankle boot" in d.find_element(By.ID, "bars").text
        )
        assert not browser.find_element(By.ID, "auth").is_displayed()
    finally:
        srv.stop()
