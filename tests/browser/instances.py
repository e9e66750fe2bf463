"""The console's Instances page as an operator reads it, with a record store: status, heading, axe-core's
serious/critical violations, CSP violations, horizontal overflow at phone width, and the table as read (each
row's cells). Screenshot console-instances.png (SCREENSHOTS_DIR).

    python3 instances.py ADMIN_URL TOKEN
"""

import sys

from playwright.sync_api import sync_playwright

from common import CSP_WATCH, axe, emit, launch, screenshot

base, token = sys.argv[1], sys.argv[2]
seen = {"errors": []}

with sync_playwright() as p:
    browser = launch(p)
    ctx = browser.new_context(
        http_credentials={"username": "operator", "password": token},
        viewport={"width": 1280, "height": 860},
    )
    ctx.add_init_script(CSP_WATCH)
    page = ctx.new_page()
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    page.on("console", lambda m: m.type == "error" and seen["errors"].append(m.text))
    # From the overview, by the navigation, as an operator gets there.
    page.goto(base + "/console/")
    page.get_by_role("link", name="Instances").click()
    page.wait_for_load_state("load")
    seen["url"] = page.url
    seen["h1"] = page.locator("h1").first.inner_text()
    seen["current"] = page.locator("nav a[aria-current=page]").inner_text()
    seen["status"] = page.locator("pre[role=status]").inner_text()
    seen["rows"] = [
        [c.inner_text().strip() for c in row.locator("td").all()]
        for row in page.locator("table tbody tr").all()
    ]
    seen["axe"] = axe(page)
    seen["csp"] = page.evaluate("() => window.__cspViolations")
    screenshot(page, "console-instances.png")
    page.set_viewport_size({"width": 390, "height": 844})
    seen["overflow_on_phone"] = page.evaluate(
        "() => document.documentElement.scrollWidth > document.documentElement.clientWidth + 1")
    browser.close()

emit(seen)
