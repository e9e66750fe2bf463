"""The feedback prompt with the keyboard only, in headless Chromium (Debian's, driven by Playwright).

Usage: feedback_keys.py URL

  1. a visitor focuses "Yes" and presses Escape: the prompt closes (a dismissal is sent) and the focus goes on
     to the page's next link;
  2. another answers "Yes" with Enter: the comment field gets the focus; Enter on "Send" with no comment thanks
     them and the focus stays in the prompt;
  3. a German browser gets the prompt's buttons in German.
Prints one JSON line of what it saw; exit 1 with the reason when the prompt does not behave.
"""

import sys

from playwright.sync_api import sync_playwright

from common import ACTIVE, emit, launch


def main():
    url = sys.argv[1]
    seen = {}
    with sync_playwright() as p:
        browser = launch(p)
        context = browser.new_context()
        page = context.new_page()
        page.goto(url)
        page.wait_for_selector(".cf-box", timeout=10_000)
        page.focus("button[data-answer=yes]")
        with page.expect_response(lambda r: r.url.endswith("/feedback")
                                  and "event=dismiss" in (r.request.post_data or ""), timeout=10_000) as dismissed:
            page.keyboard.press("Escape")
        seen["dismiss_status"] = dismissed.value.status
        seen["escape_hidden"] = page.is_hidden("[data-concierge-feedback]")
        seen["focus_after_escape"] = (page.evaluate(ACTIVE) or {}).get("text")
        context.close()

        context = browser.new_context()
        page = context.new_page()
        page.goto(url)
        page.wait_for_selector(".cf-box", timeout=10_000)
        page.focus("button[data-answer=yes]")
        with page.expect_response(lambda r: r.url.endswith("/feedback")
                                  and "event=answer" in (r.request.post_data or ""), timeout=10_000):
            page.keyboard.press("Enter")
        page.wait_for_selector("textarea.cf-comment", timeout=5_000)
        seen["focus_after_answer"] = page.evaluate(ACTIVE)["cls"]
        page.focus(".cf-form button[type=submit]")
        page.keyboard.press("Enter")
        page.wait_for_selector(".cf-status:has-text('Thank you')", timeout=5_000)
        seen["focus_after_send"] = page.evaluate(ACTIVE)["cls"]
        context.close()

        # 3. A German browser: the prompt's own words are German (the question is the rule's).
        context = browser.new_context(locale="de-DE")
        page = context.new_page()
        page.goto(url)
        page.wait_for_selector(".cf-box", timeout=10_000)
        seen["german"] = [page.text_content("button[data-answer=yes]"), page.text_content("button[data-answer=no]"),
                          page.get_attribute(".cf-close", "aria-label")]
        context.close()
        browser.close()
    emit(seen)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:
        sys.exit(f"browser check failed: {e}")
