"""What a marketer sees opening `concierge experiments report --format html`, in headless Chromium (Debian's,
driven by Playwright).

Usage: experiment_report.py FILE

Opens the report from disk and checks that it is self-contained (no request leaves the file, no script), that
every experiment has its table and charts drawn with a size, and that it prints (PDF). Prints one JSON line of
what it saw; exit 1 with the reason otherwise.
"""

import json
import pathlib
import sys

from playwright.sync_api import sync_playwright


def main():
    path = pathlib.Path(sys.argv[1]).resolve()
    requests = []
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--disable-gpu", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("request", lambda r: requests.append(r.url))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(path.as_uri())
        outside = [u for u in requests if not u.startswith("file://")]
        if outside:
            raise SystemExit(f"the report made requests outside the file: {outside}")
        if page.locator("script").count():
            raise SystemExit("the report carries a script")
        experiments = page.locator("h2", has_text="Experiment").all_inner_texts()
        charts = page.locator("svg")
        sizes = [charts.nth(i).bounding_box() for i in range(charts.count())]
        if not sizes or any(b is None or b["width"] < 100 or b["height"] < 20 for b in sizes):
            raise SystemExit(f"charts not drawn: {sizes}")
        tables = page.locator("table").count()
        text = page.inner_text("body")
        # Narrow screen: nothing wider than the viewport.
        page.set_viewport_size({"width": 390, "height": 800})
        overflow = page.evaluate("document.documentElement.scrollWidth > window.innerWidth + 1")
        pdf = page.pdf()
        browser.close()
    print(json.dumps({
        "experiments": experiments,
        "charts": len(sizes),
        "tables": tables,
        "lift_line": next((l for l in text.splitlines() if l.startswith("Lift")), None),
        "overflow_on_phone": overflow,
        "pdf_bytes": len(pdf),
        "errors": errors,
    }))


if __name__ == "__main__":
    main()
