"""What a visitor does with a feedback prompt, in headless Chromium (Debian's, driven by Playwright).

Usage: feedback_prompt.py URL

Two visitors (fresh browser contexts) open URL, a personalized page carrying a prompt that takes a comment:
  1. answers "Yes", then closes the prompt without commenting;
  2. answers "No", types a comment and sends it.
The proxy's records are checked by the Rust test that runs this script; the script checks what the visitor sees
and prints one JSON line of it. Exit 1 with the reason when the page does not behave.
"""

import sys

from playwright.sync_api import sync_playwright

from common import axe, emit, launch, screenshot


def visitor(browser, url, errors, **options):
    context = browser.new_context(**options)
    page = context.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    try:
        page.wait_for_selector(".cf-box", timeout=10_000)
    except Exception as e:
        raise RuntimeError(f"no prompt on the page ({e}); the page was:\n{page.content()[:3000]}") from None
    return context, page


def main():
    url = sys.argv[1]
    seen = {}
    errors = []
    with sync_playwright() as p:
        browser = launch(p)
        # 1. Yes, then close.
        context, page = visitor(browser, url, errors, viewport={"width": 1280, "height": 720})
        seen["question"] = page.text_content(".cf-question")
        seen["axe"] = axe(page)
        screenshot(page, "prompt.png")
        with page.expect_response(lambda r: r.url.endswith("/feedback") and r.request.method == "POST"
                                  and "event=answer" in (r.request.post_data or ""), timeout=10_000) as answered:
            page.click("button[data-answer=yes]")
        seen["answer_status"] = answered.value.status
        page.wait_for_selector("textarea.cf-comment", timeout=5_000)
        seen["axe_comment"] = axe(page)
        screenshot(page, "prompt-comment.png")
        page.click(".cf-close")
        page.wait_for_timeout(500)  # a dismissal, if the page sent one, has left by now
        seen["closed_hidden"] = page.is_hidden("[data-concierge-feedback]")
        context.close()
        # 2. No, with a comment.
        context, page = visitor(browser, url, errors, color_scheme="dark")
        screenshot(page, "prompt-dark.png")
        page.click("button[data-answer=no]")
        page.wait_for_selector("textarea.cf-comment", timeout=5_000)
        page.fill("textarea.cf-comment", "Not for <b>us</b>")
        with page.expect_response(lambda r: r.url.endswith("/feedback")
                                  and "event=comment" in (r.request.post_data or ""), timeout=10_000) as commented:
            page.click(".cf-form button[type=submit]")
        seen["comment_status"] = commented.value.status
        page.wait_for_selector(".cf-status:has-text('Thank you')", timeout=5_000)
        context.close()
        browser.close()
    seen["errors"] = errors
    emit(seen)
    if errors:
        sys.exit(f"script errors on the page: {errors}")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # a timeout names the step that did not happen
        sys.exit(f"browser check failed: {e}")
