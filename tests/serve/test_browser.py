"""The web UI in a real browser: Debian's headless Chromium driven through Selenium.

It types a prompt, clicks Generate while an API job holds the worker (so the page must show the
server's queue: "Queue 2/2 · ~N s"), then checks that the image the page shows is the job's
output file, fetched from the API, pixel for pixel. Screenshots are saved under the test's tmp
dir (and under ``$BRUSHWORK_TEST_ARTIFACTS`` when set). Without Chromium the test skips and says
why: ``.ci/run`` installs ``chromium`` and ``chromium-driver``.
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="headless Chromium is not installed (Debian: apt-get install chromium chromium-driver); "
           f"found chromium={CHROMIUM}, chromedriver={DRIVER}",
)

FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         "--window-size=1280,1700"]


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager fetch anything
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + [f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


def screenshot(driver, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    driver.save_screenshot(str(path))
    extra = os.environ.get("BRUSHWORK_TEST_ARTIFACTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(extra) / name)
    print(f"screenshot: {path}")
    return path


def fetch_in_browser(driver, url: str) -> bytes:
    """The bytes the page itself gets for ``url`` (same origin, same cookies)."""
    data = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch(arguments[0]).then(r => r.arrayBuffer()).then(buf => {
            let s = ''; const b = new Uint8Array(buf);
            for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]);
            done(btoa(s));
        }).catch(e => done('ERROR ' + e));
    """, url)
    assert not data.startswith("ERROR"), data
    return base64.b64decode(data)


def test_generate_in_the_browser(start_server, browser, tmp_path, tools):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    server = start_server()
    api = httpx.Client(base_url=server.url, timeout=60)
    wait = WebDriverWait(browser, 240, poll_frequency=0.2)

    # an API job holds the worker, so the UI's job has to wait behind it in the server's line
    # (long enough to outlast the browser's start on any machine: it is cancelled once checked)
    blocker = api.post("/api/v1/jobs", json={"prompt": "blocker", "steps": 150, "n": 64, "width": 32,
                                             "height": 32}).json()["id"]
    tools.wait_for(lambda: api.get(f"/api/v1/jobs/{blocker}").json()["status"] == "running", 120, 0.1,
                   "the API job to run")

    browser.get(f"{server.url}/ui/")
    prompt = wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, "#prompt textarea")))
    prompt.send_keys("a red circle above a blue square")
    steps = wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, "#steps input[type=number]")))
    steps.clear()
    steps.send_keys("6\t")
    browser.find_element(By.CSS_SELECTOR, "#generate").click()

    status = wait.until(lambda d: re.search(r"Queue (\d+)/(\d+) · ~\d+ s",
                                            d.find_element(By.ID, "queue-status").text))
    assert status.group(1, 2) == ("2", "2"), status.group(0)  # the API job is first in line
    screenshot(browser, tmp_path, "ui-queued.png")
    ui_jobs = api.get("/api/v1/jobs", params={"source": "ui"}).json()["jobs"]
    assert len(ui_jobs) == 1 and ui_jobs[0]["position"] == 2 and ui_jobs[0]["queue_length"] == 2

    assert api.delete(f"/api/v1/jobs/{blocker}").status_code == 202  # let the UI's job run
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#queue-status [data-status]").get_attribute(
        "data-status") in ("done", "failed", "cancelled"))
    assert browser.find_element(By.CSS_SELECTOR, "#queue-status [data-status]").get_attribute("data-status") == "done"
    img = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#result img"))
    shown = Image.open(io.BytesIO(fetch_in_browser(browser, img.get_attribute("src")))).convert("RGB")
    screenshot(browser, tmp_path, "ui-done.png")

    job_id = re.search(r"[0-9a-f]{32}", browser.find_element(By.ID, "job-info").text).group(0)
    job = api.get(f"/api/v1/jobs/{job_id}").json()
    assert job["source"] == "ui" and job["status"] == "done" and job["params"]["steps"] == 6
    assert job["params"]["prompt"] == "a red circle above a blue square"
    output = Image.open(io.BytesIO(api.get(job["outputs"][0]["url"]).content)).convert("RGB")
    assert shown.size == output.size
    assert np.array_equal(np.asarray(shown), np.asarray(output)), "the page shows a different image"

    # Gallery tab: pick the image, see its parameters, reuse them
    browser.find_element(By.XPATH, "//button[@role='tab'][contains(., 'Gallery')]").click()
    thumb = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#gallery img"))
    thumb.click()
    wait.until(lambda d: "Steps: 6" in d.find_element(By.CSS_SELECTOR, "#gallery-info textarea").get_attribute("value"))
    screenshot(browser, tmp_path, "ui-gallery.png")
    browser.find_element(By.ID, "reuse").click()
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#seed input").get_attribute("value")
               == str(job["params"]["seed"]))
    assert browser.find_element(By.CSS_SELECTOR, "#prompt textarea").get_attribute("value") == \
        "a red circle above a blue square"


def test_inpaint_a_mask_drawn_in_the_browser(start_server, browser, tmp_path):
    """Upload an image to the Inpaint tab, paint over its left part with the brush, paint: the job carries
    the drawn mask, and the image comes back changed there and unchanged far from the strokes."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    server = start_server()
    api = httpx.Client(base_url=server.url, timeout=60)
    wait = WebDriverWait(browser, 240, poll_frequency=0.2)
    arr = np.zeros((64, 64, 3), np.uint8)
    arr[:] = (30, 60, 160)
    arr[8:24, 40:56] = (230, 40, 40)
    source = tmp_path / "source.png"
    Image.fromarray(arr).save(source)

    browser.get(f"{server.url}/ui/")
    wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, "#prompt textarea")))
    browser.find_element(By.XPATH, "//button[@role='tab'][contains(., 'Inpaint')]").click()
    editor = wait.until(lambda d: d.find_element(By.ID, "inpaint-image"))
    editor.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(source))
    wait.until(lambda d: "highlight" in editor.find_element(By.CSS_SELECTOR, "button[aria-label=Brush]")
               .get_attribute("class"))  # the brush is picked once an image is in
    canvas = editor.find_element(By.CSS_SELECTOR, ".pixi-target canvas")
    side = min(canvas.size["width"], canvas.size["height"]) * 0.8  # the image, fitted and centred
    for x in np.linspace(-0.45, -0.15, 4):  # strokes over the left third of the image
        (ActionChains(browser).move_to_element_with_offset(canvas, int(x * side), int(-0.4 * side)).click_and_hold()
         .move_by_offset(0, int(0.8 * side) // 2).move_by_offset(0, int(0.8 * side) // 2).release().perform())
    browser.find_element(By.CSS_SELECTOR, "#inpaint-prompt textarea").send_keys("a green circle")
    screenshot(browser, tmp_path, "ui-inpaint-mask.png")
    browser.find_element(By.ID, "inpaint-generate").click()
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#inpaint-status [data-status]").get_attribute(
        "data-status") in ("done", "failed", "cancelled"))
    assert browser.find_element(By.CSS_SELECTOR, "#inpaint-status [data-status]").get_attribute("data-status") == \
        "done", browser.find_element(By.ID, "inpaint-status").text
    img = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#inpaint-result img"))
    shown = Image.open(io.BytesIO(fetch_in_browser(browser, img.get_attribute("src")))).convert("RGB")
    screenshot(browser, tmp_path, "ui-inpaint-done.png")

    job_id = re.search(r"[0-9a-f]{32}", browser.find_element(By.ID, "inpaint-info").text).group(0)
    job = api.get(f"/api/v1/jobs/{job_id}").json()
    assert job["source"] == "ui" and job["params"]["mask_sha256"] and job["params"]["init_image_sha256"]
    assert job["params"]["prompt"] == "a green circle"
    out = np.asarray(shown).astype(int)
    assert out.shape == (64, 64, 3)
    assert np.abs(out[:, 48:] - arr[:, 48:].astype(int)).max() == 0  # far from the strokes: untouched
    assert np.abs(out[:, :16] - arr[:, :16].astype(int)).mean() > 1  # under the strokes: repainted
