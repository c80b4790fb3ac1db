"""The HTML report in a real browser: headless Chromium (Debian's package) driven by Selenium, no network.

The real scoring CLI scores a tiny evaluation on disk (a found and a missed lesion, false
positives) and writes ``metrics.csv`` and ``report/``; the report is opened through ``file://``
with every network request sent to a dead proxy. Skipped, with the reason, where Chromium, its
driver or Selenium is not installed (``.ci/run`` installs Debian's ``chromium`` and
``chromium-driver``).
"""

from __future__ import annotations

import csv
import shutil

import pytest

from labelfree.cli import score
from tests.helpers.report_cases import FALSE_POSITIVE, MISSED, ras_range, write_tiny_evaluation

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

pytestmark = pytest.mark.slow

#: Pixels of the first canvas by outline colour: prediction tumor red (255, 0, 0), reference
#: tumor yellow (255, 255, 0); the CT is grey, so neither test matches it.
COUNT_COLOURS = """
const canvas = document.querySelector('#viewer canvas');
const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
let red = 0, yellow = 0;
for (let i = 0; i < data.length; i += 4) {
  const r = data[i], g = data[i + 1], b = data[i + 2];
  if (r > 150 && r - Math.max(g, b) > 100) red++;
  if (r > 150 && g > 150 && b < 80) yellow++;
}
return {red: red, yellow: yellow};
"""


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (requirements-test.txt)")
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(path):
            pytest.skip(f"{path} is not installed (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1000", "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
                     "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost"):
        options.add_argument(argument)  # the last three: no request can leave the machine
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _wait(driver, condition, what, seconds=20):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds).until(lambda d: condition(d), message=what)


def _open_case(driver, name):
    from selenium.webdriver.common.by import By

    row = next(r for r in driver.find_elements(By.CSS_SELECTOR, "#cases tbody tr")
               if r.find_element(By.TAG_NAME, "td").text == name)
    row.click()
    index = row.get_attribute("data-case")
    viewer = driver.find_element(By.ID, "viewer")
    _wait(driver, lambda d: viewer.get_attribute("data-ready") == "1" and viewer.get_attribute("data-case") == index,
          f"case {name} shown")
    return viewer


def test_report_in_headless_chromium(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    datalist, pred_dir = write_tiny_evaluation(tmp_path)
    out = pred_dir.parent
    assert score.main(["--pred_dir", str(pred_dir), "--json_dir", str(datalist), "--val_dir",
                       str(tmp_path / "data")]) == 0
    page = out / "report" / "index.html"
    assert page.is_file()
    with open(out / "metrics.csv", newline="") as f:
        metrics = list(csv.DictReader(f))

    driver = browser
    driver.get(page.as_uri())

    # The table: every case of metrics.csv, every column, each cell holding the CSV's value.
    headers = [th.text for th in driver.find_elements(By.CSS_SELECTOR, "#cases thead th")]
    assert headers == list(metrics[0])
    rows = driver.find_elements(By.CSS_SELECTOR, "#cases tbody tr")
    shown = {r.find_element(By.TAG_NAME, "td").text: r for r in rows}
    assert sorted(shown) == sorted(m["name"] for m in metrics)
    for expected in metrics:
        cells = shown[expected["name"]].find_elements(By.TAG_NAME, "td")
        assert [c.get_attribute("data-value") for c in cells] == list(expected.values())
        for cell, (column, value) in zip(cells[1:], list(expected.items())[1:]):
            text = f"{float(value):.4f}" if "." in value or value == "nan" else value
            assert cell.text == ("-" if value == "nan" else text), column

    # Sorting by a column orders the rows by its values (false positives: 0, 1, 1; missing last).
    driver.find_element(By.CSS_SELECTOR, '#cases th[data-column="false_positives"]').click()
    order = [int(r.find_elements(By.TAG_NAME, "td")[headers.index("false_positives")].get_attribute("data-value"))
             for r in driver.find_elements(By.CSS_SELECTOR, "#cases tbody tr")]
    assert order == sorted(order)

    viewer = _open_case(driver, "liver_a")
    statuses = [r.get_attribute("data-status") for r in viewer.find_elements(By.CSS_SELECTOR, "#lesions tbody tr")]
    assert sorted(statuses) == ["false positive", "found", "missed"]

    # A key press moves the slice and changes the image.
    start, before = int(viewer.get_attribute("data-slice")), driver.execute_script(
        "return document.querySelector('#viewer canvas').toDataURL()")
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_DOWN if start > 0 else Keys.ARROW_UP)
    moved = int(viewer.get_attribute("data-slice"))
    assert abs(moved - start) == 1
    assert driver.execute_script("return document.querySelector('#viewer canvas').toDataURL()") != before

    # A click on the false positive shows its slice with the prediction's red outline; the
    # prediction toggle hides it.
    viewer.find_element(By.CSS_SELECTOR, '#lesions tr[data-status="false positive"]').click()
    assert int(viewer.get_attribute("data-slice")) in ras_range("liver_a", FALSE_POSITIVE, 2)
    assert driver.execute_script(COUNT_COLOURS)["red"] > 0
    viewer.find_element(By.CSS_SELECTOR, 'input[data-layer="prediction"]').click()
    assert driver.execute_script(COUNT_COLOURS)["red"] == 0
    viewer.find_element(By.CSS_SELECTOR, 'input[data-layer="prediction"]').click()

    # A click on the missed lesion shows the slice through it, its reference outline (yellow), in
    # every view: the scan is stored LPS, the viewer shows RAS.
    viewer.find_element(By.CSS_SELECTOR, '#lesions tr[data-status="missed"]').click()
    assert viewer.get_attribute("data-view") == "axial"
    assert int(viewer.get_attribute("data-slice")) in ras_range("liver_a", MISSED, 2)
    assert driver.execute_script(COUNT_COLOURS)["yellow"] > 0
    driver.find_element(By.TAG_NAME, "body").send_keys("c")
    assert viewer.get_attribute("data-view") == "coronal"
    assert int(viewer.get_attribute("data-slice")) in ras_range("liver_a", MISSED, 1)
    assert driver.execute_script(COUNT_COLOURS)["yellow"] > 0
    driver.find_element(By.TAG_NAME, "body").send_keys("a")

    # Nothing was fetched but files, and the page logged no error.
    scripts = driver.execute_script("return Array.from(document.scripts).map(s => s.src)")
    assert "" in scripts and any(s.endswith("/cases/case_000.js") for s in scripts)  # inline viewer, a case file
    assert all(s == "" or s.startswith("file://") for s in scripts)
    assert "http://" not in page.read_text() and "https://" not in page.read_text()
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []

    driver.save_screenshot(str(tmp_path / "report.png"))
    assert (tmp_path / "report.png").stat().st_size > 10_000
