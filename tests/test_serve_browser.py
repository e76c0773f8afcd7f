"""The web page of ``mfrec serve``, rendered by headless Chromium (Debian's ``chromium`` and ``chromium-driver``).

Skips, with the reason, where Chromium, its driver or selenium is missing (``.ci/run`` installs them when it can).
"""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the test extra has it)")

from selenium.webdriver.chrome.service import Service  # noqa: E402  (webdriver.ChromeService is newer than 4.10)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from conftest import running_server  # noqa: E402
from mfrec import ImplicitALS, datasets  # noqa: E402
from mfrec.serve import create_app  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="headless Chromium needs Debian's chromium and chromium-driver packages")


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1600"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def titled(tmp_path_factory):
    """The synthetic dataset (titles "Item 235 (2002)"), saved with its titles as `mfrec train` does."""
    data = datasets.synthetic(seed=0)
    titles = data.item_titles
    path = tmp_path_factory.mktemp("page") / "synthetic.mfrec"
    ImplicitALS(iterations=5).fit(data.interactions).save(path, extra={
        "item_titles": {"ids": titles.index.tolist(), "titles": titles.astype(str).tolist()}, "dataset": "synthetic"})
    with running_server(create_app(path)) as url:
        yield url


def _wait(browser, css, timeout=20):
    return WebDriverWait(browser, timeout).until(EC.visibility_of_element_located((By.CSS_SELECTOR, css)))


def test_user_page_shows_the_first_recommended_title(browser, titled):
    import httpx

    expected = httpx.get(f"{titled}/users/196/recommendations?k=10").json()["items"][0]["title"]
    browser.get(f"{titled}/?user=196")
    first = _wait(browser, "#recommendations li button")
    assert first.text.startswith(expected)
    assert browser.find_element(By.ID, "user-name").text == "196"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#history li")) > 0
    assert not browser.find_element(By.ID, "no-titles").is_displayed()


def test_keyboard_user_search_then_item_view(browser, titled):
    browser.get(titled)
    field = _wait(browser, "#user-query")
    field.send_keys("42", Keys.ENTER)  # typing and Enter: no mouse
    _wait(browser, "#recommendations li button")
    assert browser.find_element(By.ID, "user-name").text == "42"
    first = browser.find_element(By.CSS_SELECTOR, "#recommendations li button")
    first.send_keys(Keys.ENTER)  # an item is a focusable button
    _wait(browser, "#similar-items li button")
    assert browser.find_element(By.ID, "item-name").text.startswith(first.text.split(" (")[0])
    assert len(browser.find_elements(By.CSS_SELECTOR, "#item-users li")) == 10


def test_start_from_scratch_folds_in_picked_items(browser, titled):
    browser.get(titled)
    _wait(browser, "#item-query").send_keys("Item 12", Keys.ENTER)
    _wait(browser, "#item-results li button").click()
    assert not browser.find_element(By.ID, "fold-in").get_attribute("disabled")
    browser.find_element(By.ID, "fold-in").click()
    recs = WebDriverWait(browser, 20).until(
        lambda b: b.find_elements(By.CSS_SELECTOR, "#scratch-recommendations li button"))
    assert len(recs) == 10


def test_an_unknown_user_is_said_plainly(browser, titled):
    browser.get(f"{titled}/?user=nobody")
    error = _wait(browser, "#user-error")
    assert "nobody" in error.text


def test_a_model_without_titles_says_so(browser, tmp_path):
    data = datasets.synthetic(seed=0, n_users=60, n_items=40)
    path = tmp_path / "plain.mfrec"
    ImplicitALS(iterations=2).fit(data.interactions).save(path)
    with running_server(create_app(path)) as url:
        browser.get(url)
        note = _wait(browser, "#no-titles")
        assert "no titles" in note.text
