"""A real browser (headless Debian chromium via selenium) uses the search page: chooses a photo, sees it with its
crop box and the results with scores, opens one large."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import chrome, require_browser
from tiefwatch.config import Config
from tiefwatch.workspace import Workspace

webdriver = require_browser()

from selenium.webdriver.common.by import By  # noqa: E402 (only once selenium is known to be there)
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    with chrome(tmp_path / "chromium-profile", (1200, 900)) as driver:
        yield driver


@pytest.fixture
def search_url(served_workspace: tuple[Workspace, Config, Path], searcher) -> Iterator[str]:
    from tiefwatch.web.app import create_app
    from tiefwatch.web.server import WebServer

    workspace, config, _ = served_workspace
    server = WebServer(create_app(workspace, config, searcher=searcher), port=0)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_upload_see_results_open_one(
    browser: webdriver.Chrome, search_url: str, served_workspace: tuple[Workspace, Config, Path], tmp_path: Path
) -> None:
    from bbox.synth import PhotoSimulator
    from tiefwatch.images import load_image, save_image

    _, _, catalog = served_workspace
    import numpy as np

    # a photo-like shot of w3: cluttered background, tilt, so the page has a crop box to draw
    scene = PhotoSimulator(seed=4)(load_image(catalog / "w3.png"), np.random.default_rng(4))
    photo = tmp_path / "my watch.jpg"
    save_image(photo, scene.image, quality=90)

    wait = WebDriverWait(browser, 30)
    browser.get(search_url)
    wait.until(lambda d: "catalogue photos" in d.find_element(By.ID, "catalogue").text)
    assert browser.find_element(By.ID, "catalogue").text.startswith("6 catalogue photos")
    browser.find_element(By.ID, "file").send_keys(str(photo))
    tiles = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results .result") or None)
    loaded = "return [...document.querySelectorAll('#results img, #photo')].every(i => i.complete && i.naturalWidth)"
    wait.until(lambda d: d.execute_script(loaded))
    assert len(tiles) == 6  # search.k is 10; the catalogue holds 6
    assert browser.find_element(By.ID, "query-name").text == "my watch.jpg"
    assert "results in" in browser.find_element(By.ID, "status").text
    ranks = [tile.find_element(By.CSS_SELECTOR, ".rank").text for tile in tiles]
    scores = [float(tile.find_element(By.CSS_SELECTOR, ".score").text) for tile in tiles]
    assert ranks == [f"#{n}" for n in range(1, 7)] and all(-1 <= score <= 1 for score in scores)
    box = browser.find_element(By.ID, "box")
    framing = browser.find_element(By.ID, "framing").text
    assert box.is_displayed() and "red box" in framing  # this shot's watch is found (confidence about 0.5)
    if box.is_displayed():  # drawn where the box lies in the photo as shown, whatever its scale on screen
        shown, drawn = browser.find_element(By.ID, "photo").rect, box.rect
        x0, y0, x1, y1 = (float(v) for v in box.get_attribute("data-box").split(","))
        height, width = scene.image.shape[:2]
        scale_x, scale_y = shown["width"] / width, shown["height"] / height
        expected = (shown["x"] + x0 * scale_x, shown["y"] + y0 * scale_y, (x1 - x0) * scale_x, (y1 - y0) * scale_y)
        got = (drawn["x"], drawn["y"], drawn["width"], drawn["height"])
        assert all(abs(a - b) <= 4 for a, b in zip(got, expected, strict=True)), (got, expected)
    if os.environ.get("TIEFWATCH_SCREENSHOT_SEARCH"):
        browser.save_screenshot(str(tmp_path / "search.png"))
        shutil.copy(tmp_path / "search.png", os.environ["TIEFWATCH_SCREENSHOT_SEARCH"])

    tiles[1].click()
    large = browser.find_element(By.ID, "large")
    wait.until(lambda d: large.is_displayed())
    large_image = browser.find_element(By.ID, "large-img")
    wait.until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", large_image))
    assert "large=true" in large_image.get_attribute("src")
    assert browser.find_element(By.ID, "large-caption").text.startswith("#2 ")
    browser.find_element(By.CSS_SELECTOR, "#large .close").click()
    wait.until(lambda d: not large.is_displayed())

    # an option changed searches the same photo again: without the crop, the whole photo
    browser.find_element(By.ID, "crop").click()
    wait.until(lambda d: "whole photo" in d.find_element(By.ID, "framing").text)
    assert not box.is_displayed() and len(browser.find_elements(By.CSS_SELECTOR, "#results .result")) == 6

    # a file that is not an image: the page says so in one line and stays usable
    browser.find_element(By.ID, "again").click()
    (tmp_path / "notes.png").write_bytes(b"not an image")
    browser.find_element(By.ID, "file").send_keys(str(tmp_path / "notes.png"))
    wait.until(lambda d: "not a recognised image format" in d.find_element(By.ID, "status").text)
    assert "error" in browser.find_element(By.ID, "status").get_attribute("class")
