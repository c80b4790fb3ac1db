"""Screenshot of an HTML report (``report/index.html``) in headless Chromium, for the documentation.

    python scripts/screenshot_report.py demo_out/outs/synt.no_pretrain.unet/0.5/report/index.html \\
        --out docs/assets/report.png --case 1 --lesion missed

Opens the report from disk with the network cut off (a dead proxy), opens the ``--case``-th row
of the case table, clicks the first lesion of status ``--lesion`` (``missed``, ``found``,
``false positive``) if there is one, and saves the window as PNG. Needs Debian's ``chromium`` and
``chromium-driver`` and the ``selenium`` package (requirements-test.txt).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", help="the report's index.html")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--case", type=int, default=0, help="row of the case table to open (0: the first)")
    parser.add_argument("--lesion", default=None, help="click the first lesion of this status")
    parser.add_argument("--view", default="axial", choices=("axial", "coronal", "sagittal"))
    parser.add_argument("--size", type=int, nargs=2, default=(1280, 900), metavar=("WIDTH", "HEIGHT"))
    args = parser.parse_args()

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                     f"--window-size={args.size[0]},{args.size[1]}", "--proxy-server=http://127.0.0.1:9"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(Path(args.page).resolve().as_uri())
        driver.find_elements(By.CSS_SELECTOR, "#cases tbody tr")[args.case].click()
        viewer = driver.find_element(By.ID, "viewer")
        WebDriverWait(driver, 30).until(lambda d: viewer.get_attribute("data-ready") == "1")
        if args.lesion:
            rows = viewer.find_elements(By.CSS_SELECTOR, f'#lesions tr[data-status="{args.lesion}"]')
            if rows:
                rows[0].click()
        viewer.find_element(By.CSS_SELECTOR, f'button[data-view="{args.view}"]').click()
        driver.execute_script("document.querySelector('.scroll').scrollLeft = 0; "
                              "document.getElementById('viewer').scrollIntoView()")
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(args.out))
    finally:
        driver.quit()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
