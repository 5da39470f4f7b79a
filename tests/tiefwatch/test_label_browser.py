"""A real browser (headless Debian chromium via selenium) labels triplets with clicks and keys, undoes one, and the
CSV holds exactly the triplets the page showed as saved."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import chrome, require_browser
from tiefwatch.label import make_server
from tiefwatch.triplets import read_triplets
from tiefwatch.workspace import Workspace

webdriver = require_browser()

from selenium.webdriver.common.by import By  # noqa: E402 (only once selenium is known to be there)
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    with chrome(tmp_path / "chromium-profile", (1400, 860)) as driver:
        yield driver


@pytest.fixture
def label_server(tmp_path: Path, catalog_dir: Path, fast_overrides: list[str]) -> Iterator[tuple[str, Path]]:
    from tiefwatch.index import index_catalog

    workspace = Workspace(tmp_path / "ws")
    config = workspace.load_config(overrides=fast_overrides)
    index_catalog(catalog_dir, workspace, config)
    csv_path = tmp_path / "triplets.csv"
    server, _ = make_server(workspace, config, csv_path, port=0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/label/", csv_path
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_label_with_clicks_and_keys_then_undo(
    browser: webdriver.Chrome, label_server: tuple[str, Path], tmp_path: Path
) -> None:
    url, csv_path = label_server
    wait = WebDriverWait(browser, 20)
    browser.get(url)

    name = wait.until(lambda d: d.find_element(By.ID, "name-input"))
    wait.until(lambda d: name.is_displayed())
    name.send_keys("alice\n")
    tiles = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#grid .tile") or None)
    wait.until(lambda d: d.execute_script("return [...document.images].every(i => i.complete && i.naturalWidth > 0)"))

    def count() -> str:
        return browser.find_element(By.ID, "count-you").text

    def anchor() -> str:
        return browser.find_element(By.ID, "anchor-img").get_attribute("data-path") or ""

    def tile_path(number: int) -> str:
        tile = browser.find_element(By.CSS_SELECTOR, f'#grid .tile[data-index="{number}"]')
        return tile.get_attribute("data-path") or ""

    def press(keys: str) -> None:
        browser.find_element(By.TAG_NAME, "body").send_keys(keys)

    first_anchor = anchor()
    expected = []
    # 1: click the most alike, then click a less alike one
    tiles[0].click()
    assert "near" in tiles[0].get_attribute("class")
    tiles[1].click()
    wait.until(lambda d: count() == "1")
    expected.append((first_anchor, tile_path(1), tile_path(2)))
    # 2: the same near, another far, by keyboard
    press("3")
    wait.until(lambda d: count() == "2")
    expected.append((first_anchor, tile_path(1), tile_path(3)))
    assert "far" in browser.find_element(By.CSS_SELECTOR, '#grid .tile[data-index="3"]').get_attribute("class")
    browser.save_screenshot(str(tmp_path / "label_tool.png"))
    if os.environ.get("TIEFWATCH_SCREENSHOT"):
        shutil.copy(tmp_path / "label_tool.png", os.environ["TIEFWATCH_SCREENSHOT"])
    # 3: next anchor, all by keyboard
    press(" ")
    wait.until(lambda d: anchor() and anchor() != first_anchor)
    second_anchor = anchor()
    press("2")
    press("1")
    wait.until(lambda d: count() == "3")
    undone = (second_anchor, tile_path(2), tile_path(1))
    # undo the last one
    press("u")
    wait.until(lambda d: count() == "2")
    assert "far" not in browser.find_element(By.CSS_SELECTOR, '#grid .tile[data-index="1"]').get_attribute("class")

    triplets = read_triplets(csv_path)
    assert [t.key for t in triplets] == expected
    assert undone not in [t.key for t in triplets]
    assert {t.annotator for t in triplets} == {"alice"}
    assert triplets.duplicates == 0

    # the name is remembered: a reload goes straight to work
    browser.refresh()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#grid .tile"))
    assert not browser.find_element(By.ID, "name-dialog").is_displayed()
    assert browser.find_element(By.ID, "who").text == "alice"
    assert browser.find_element(By.ID, "count-you").text == "2"
