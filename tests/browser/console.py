"""The console as a marketer and a reviewer use it: every page, the preview form, a sorted table, a search, a
record, a CSV download. Per page: status, heading, axe-core's serious/critical violations, CSP violations,
horizontal overflow at phone width; screenshots of each page (SCREENSHOTS_DIR).

    python3 console.py ADMIN_URL TOKEN REQUEST_ID
"""

import os
import sys

from playwright.sync_api import sync_playwright

from common import CSP_WATCH, axe, emit, launch

base, token, request_id = sys.argv[1], sys.argv[2], sys.argv[3]
seen = {"pages": {}, "errors": [], "request_id": request_id}

LAPTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}

with sync_playwright() as p:
    # Without the token: 401 (asked as a plain HTTP client, so no page logs the refusal).
    anon = p.request.new_context()
    seen["unauthenticated"] = anon.get(base + "/console/").status
    anon.dispose()

    browser = launch(p)
    ctx = browser.new_context(
        http_credentials={"username": "reviewer", "password": token},
        viewport=LAPTOP,
        accept_downloads=True,
    )
    ctx.add_init_script(CSP_WATCH)
    page = ctx.new_page()
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    # The previewed pages' own frames are sandboxed with default-src 'none': what they are refused (their
    # scripts, style sheets) is the sandbox working, not the console failing.
    frame_refusals = []

    def on_console(m):
        if m.type != "error":
            return
        where = (m.location or {}).get("url", "")
        (frame_refusals if "/console/rules/preview/frame" in where or "/console/rules/preview/frame" in m.text
         else seen["errors"]).append(m.text)

    page.on("console", on_console)

    def check(name, response=None):
        """What this page is like, as loaded now (after goto or a click)."""
        page.wait_for_load_state("load")
        status = response.status if response is not None else 200
        found = {
            "status": status,
            "h1": page.locator("h1").first.inner_text(),
            "axe": axe(page),
            "csp": page.evaluate("() => window.__cspViolations"),
        }
        out = os.environ.get("SCREENSHOTS_DIR")
        if out:
            os.makedirs(out, exist_ok=True)
            page.screenshot(path=f"{out}/console-{name}.png", full_page=True)
        page.set_viewport_size(PHONE)
        found["overflow_on_phone"] = page.evaluate(
            "() => document.documentElement.scrollWidth > document.documentElement.clientWidth + 1")
        if out and name in ("overview", "preview"):
            page.screenshot(path=f"{out}/console-{name}-phone.png", full_page=False)
        page.set_viewport_size(LAPTOP)
        seen["pages"][name] = found

    def goto(name, path):
        check(name, page.goto(base + path))

    goto("overview", "/console/")

    # Rules: sort by rule id (a link in the column head), then the preview form from the page's link.
    goto("rules", "/console/rules")
    page.locator("th a", has_text="rule").first.click()
    page.wait_for_load_state("load")
    seen["sorted"] = page.locator("th[aria-sort]").first.get_attribute("aria-sort")
    page.get_by_role("link", name="Preview a visit").click()
    check("preview_form")
    page.get_by_label("or target account").select_option(label="Acme & Sons")
    page.get_by_label("URL").fill("/landing")
    page.get_by_label("utm_campaign").fill("spring")
    page.get_by_role("button", name="Preview").click()
    check("preview")
    row = page.locator("tr", has=page.locator("code", has_text="acme.example/hero")).first
    seen["preview_verdict"] = row.locator(".status").inner_text()
    seen["preview_original_h1"] = page.frame_locator('iframe[title="The origin\'s page"]').locator("h1").inner_text()
    seen["preview_rewritten_h1"] = page.frame_locator(
        'iframe[title="The page as the visitor gets it"]').locator("h1").inner_text()
    seen["preview_diff_added"] = page.locator("pre.diff ins").count()
    if os.environ.get("SCREENSHOTS_DIR"):
        frames = page.locator(".frames")
        frames.scroll_into_view_if_needed()
        page.wait_for_timeout(300)
        frames.screenshot(path=os.path.join(os.environ["SCREENSHOTS_DIR"], "console-preview-frames.png"))

    goto("experiments", "/console/experiments")
    seen["experiment_heading"] = page.locator(".report h2").first.inner_text()

    goto("feedback", "/console/feedback")
    seen["comment"] = page.locator("blockquote").first.inner_text()
    seen["comment_images"] = page.locator("main img").count()

    # Audit: search by the request id a visitor's page carried, open the record, download the search.
    page.goto(base + "/console/audit")
    page.get_by_label("Request id").fill(request_id)
    page.get_by_role("button", name="Search").click()
    check("audit")
    seen["search_rows"] = page.locator("main table tbody tr").count()
    with page.expect_download() as d:
        page.get_by_role("link", name="CSV").click()
    download = d.value
    seen["download_name"] = download.suggested_filename
    with open(download.path(), encoding="utf-8") as f:
        seen["download_lines"] = len(f.read().splitlines())
    page.locator("main table tbody tr a").first.click()
    check("record")
    seen["record_text"] = page.locator("main").inner_text()

    goto("verify", "/console/audit/verify")
    seen["verify"] = page.locator("main .status").first.inner_text()

    seen["frame_refusals"] = len(frame_refusals)
    browser.close()

emit(seen)
