"""The consent banner and the choices page as visitors meet them, in headless Chromium (Debian's, driven by
Playwright): on a dark site whose styles try to reach into the banner, served with a strict
`Content-Security-Policy: default-src 'self'`.

Usage: banner.py BASE (the proxy, e.g. http://127.0.0.1:8080; its origin serves /site)

Each visitor is a fresh browser context:
  accept       clicks "Accept all": the page reloads without the banner;
  keyboard     reaches the banner with the first Tab, rejects with Enter: focus goes on to the page's first link;
  choose       opens "Choose", allows only the organization tier and saves; the choices page then says so;
  portrait / landscape   375 px wide / 375 px high with "Choose" open: the banner fits the window and scrolls;
  dark         prefers a dark colour scheme: the banner is dark and its title readable;
  german       prefers German: the banner speaks German;
  nojs         without JavaScript: the <noscript> link leads to the choices page, whose plain form records a choice;
  choices      the choices page itself.
axe-core checks every state for serious or critical violations; CSP violations and script errors are collected.
Prints one JSON line of what it saw (the Rust test asserts on it); exit 1 with the reason when a step fails.
"""

import sys

from playwright.sync_api import sync_playwright

from common import ACTIVE, CONTRAST, CSP_WATCH, axe, emit, launch, screenshot  # noqa: F401

BANNER = "#concierge-consent .cc-banner"

# Geometry of the banner and of an element in it, in the window.
GEOMETRY = """(sel) => {
  const root = document.querySelector('#concierge-consent').shadowRoot;
  const b = root.querySelector('.cc-banner'), r = b.getBoundingClientRect();
  const t = sel ? root.querySelector(sel) : null;
  let target = null;
  if (t) { t.scrollIntoView({block: 'nearest'}); const q = t.getBoundingClientRect();
    target = {top: q.top, bottom: q.bottom, visible: q.top >= r.top - 1 && q.bottom <= r.bottom + 1
      && q.top >= 0 && q.bottom <= innerHeight}; }
  return {top: r.top, bottom: r.bottom, left: r.left, right: r.right, height: innerHeight, width: innerWidth,
    scrolls: b.scrollHeight > b.clientHeight, overflow_x: document.documentElement.scrollWidth > innerWidth + 1,
    target};
}"""

# What the banner looks like from inside its shadow root.
LOOK = """() => {
  const root = document.querySelector('#concierge-consent').shadowRoot;
  const b = root.querySelector('.cc-banner'), title = root.querySelector('.cc-title');
  const button = root.querySelector('.cc-button');
  return {title: title.textContent, lang: b.getAttribute('lang'), first_in_body: document.body.firstElementChild.id,
    banner_background: getComputedStyle(b).backgroundColor, button_background: getComputedStyle(button).backgroundColor,
    button_font_size: getComputedStyle(button).fontSize, title_font_size: getComputedStyle(title).fontSize,
    buttons: [...root.querySelectorAll('.cc-actions .cc-button')].map(x => x.textContent),
    links: [...root.querySelectorAll('.cc-links a')].map(x => x.textContent)};
}"""


class Visit:
    def __init__(self, browser, base, errors, **options):
        self.context = browser.new_context(**options)
        self.context.add_init_script(CSP_WATCH)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: errors.append(str(e)))
        self.base = base
        self.errors = errors
        self.collected, self.axed = [], set()

    def open(self, path="/site", banner=True):
        self.page.goto(self.base + path)
        if banner:
            self.page.wait_for_selector(BANNER, state="visible", timeout=10_000)
        return self.page

    def _violations(self):
        return self.page.evaluate("[performance.timeOrigin, window.__cspViolations || []]")

    def csp(self):
        """The CSP violations of every document this visitor saw (before axe ran on it; see `axe`)."""
        origin, now = self._violations()
        return self.collected + ([] if origin in self.axed else now)

    def axe(self):
        """axe-core's findings. axe applies inline styles for some checks, which the site's CSP refuses: those
        refusals are axe's, so the document's violations are taken before it runs and its own are dropped."""
        origin, now = self._violations()
        if origin not in self.axed:
            self.collected += now
            self.axed.add(origin)
        n = len(self.errors)
        found = axe(self.page)
        del self.errors[n:]
        return found

    def contrast(self, selector):
        return self.page.locator(selector).evaluate(CONTRAST)

    def cookie(self):
        return sorted(c["name"] for c in self.context.cookies())

    def close(self):
        self.context.close()


def main():
    base = sys.argv[1].rstrip("/")
    seen, errors, csp, violations = {}, [], [], {}
    with sync_playwright() as p:
        browser = launch(p)

        # accept
        v = Visit(browser, base, errors, viewport={"width": 1280, "height": 800}, color_scheme="light")
        page = v.open()
        seen["look"] = page.evaluate(LOOK)
        seen["title_contrast"] = v.contrast("#concierge-consent .cc-title")
        violations["banner"] = v.axe()
        screenshot(page, "banner.png")
        with page.expect_navigation(timeout=10_000):
            page.click(f"{BANNER} button[value=accept]")
        page.wait_for_load_state()
        seen["accept_banner_after"] = page.locator("#concierge-consent").count()
        seen["accept_cookies"] = v.cookie()
        csp += v.csp()
        v.close()

        # keyboard: the first Tab reaches the banner; Reject with Enter; focus goes on to the page.
        v = Visit(browser, base, errors, viewport={"width": 1280, "height": 800})
        page = v.open()
        page.keyboard.press("Tab")
        seen["first_tab"] = page.evaluate(ACTIVE)
        for _ in range(10):
            active = page.evaluate(ACTIVE)
            if active and active["text"] == "Reject all":
                break
            page.keyboard.press("Tab")
        seen["reject_reached"] = page.evaluate(ACTIVE)
        with page.expect_response(lambda r: r.url.endswith("/consent") and r.request.method == "POST",
                                  timeout=10_000) as posted:
            page.keyboard.press("Enter")
        seen["reject_status"] = posted.value.status
        page.wait_for_selector(BANNER, state="detached", timeout=5_000)
        seen["focus_after_reject"] = page.evaluate(ACTIVE)
        seen["announced"] = page.evaluate(
            "document.querySelector('#concierge-consent').shadowRoot.querySelector('[role=status]').textContent")
        seen["reject_cookies"] = v.cookie()
        page.reload()
        page.wait_for_load_state("networkidle")
        seen["reject_banner_after_reload"] = page.locator("#concierge-consent").count()
        csp += v.csp()
        v.close()

        # choose: only the organization tier.
        v = Visit(browser, base, errors, viewport={"width": 1280, "height": 800})
        page = v.open()
        page.click(f"{BANNER} button[aria-controls=cc-details]")
        seen["choose_focus"] = page.evaluate(ACTIVE)
        seen["choose_expanded"] = page.get_attribute(f"{BANNER} button[aria-controls=cc-details]", "aria-expanded")
        violations["banner_choose"] = v.axe()
        screenshot(page, "banner-choose.png")
        page.check(f"{BANNER} #cc-firmographic")
        with page.expect_navigation(timeout=10_000):
            page.click(f"{BANNER} button[value=custom]")
        page.goto(base + "/_concierge/consent")
        seen["choose_status"] = page.text_content(".cc-status")
        csp += v.csp()
        v.close()

        # small screens, with "Choose" open
        for name, size in [("portrait", {"width": 375, "height": 667}), ("landscape", {"width": 667, "height": 375})]:
            v = Visit(browser, base, errors, viewport=size, is_mobile=True, has_touch=True, device_scale_factor=2)
            page = v.open()
            page.click(f"{BANNER} button[aria-controls=cc-details]")
            seen[name] = page.evaluate(GEOMETRY, "button[value=custom]")
            page.evaluate(GEOMETRY, "button[value=accept]")  # back to the top of the banner for the picture
            violations[name] = v.axe()
            screenshot(page, f"banner-375-{name}.png")
            csp += v.csp()
            v.close()

        # dark colour scheme
        v = Visit(browser, base, errors, viewport={"width": 1280, "height": 800}, color_scheme="dark")
        page = v.open()
        seen["dark_look"] = page.evaluate(LOOK)
        seen["dark_title_contrast"] = v.contrast("#concierge-consent .cc-title")
        seen["dark_text_contrast"] = v.contrast("#concierge-consent .cc-text")
        violations["dark"] = v.axe()
        screenshot(page, "banner-dark.png")
        csp += v.csp()
        v.close()

        # German
        v = Visit(browser, base, errors, viewport={"width": 1280, "height": 800}, locale="de-DE")
        page = v.open()
        seen["german_look"] = page.evaluate(LOOK)
        violations["german"] = v.axe()
        screenshot(page, "banner-de.png")
        page.goto(base + "/_concierge/consent")
        seen["german_choices_title"] = page.text_content("h1")
        seen["german_choices_lang"] = page.get_attribute("html", "lang")
        csp += v.csp()
        v.close()

        # the choices page, with JavaScript
        v = Visit(browser, base, errors, viewport={"width": 1280, "height": 800})
        page = v.open("/_concierge/consent?return=%2Fsite", banner=False)
        violations["choices"] = v.axe()
        screenshot(page, "choices.png")
        v.close()
        v = Visit(browser, base, errors, viewport={"width": 1280, "height": 800}, color_scheme="dark")
        page = v.open("/_concierge/consent?return=%2Fsite", banner=False)
        violations["choices_dark"] = v.axe()
        seen["choices_dark_contrast"] = v.contrast("h1")
        v.close()

        # without JavaScript
        v = Visit(browser, base, errors, viewport={"width": 1280, "height": 800}, java_script_enabled=False)
        page = v.open(banner=False)
        seen["nojs_link"] = page.text_content(".concierge-noscript a")
        seen["nojs_link_visible"] = page.is_visible(".concierge-noscript a")
        seen["nojs_banner"] = page.locator("#concierge-consent").count()
        page.click(".concierge-noscript a")
        page.wait_for_selector("main.cc-page", timeout=5_000)
        seen["nojs_choices_title"] = page.text_content("h1")
        screenshot(page, "choices-nojs.png")
        page.click("button[value=reject]")
        page.wait_for_load_state()
        seen["nojs_back_at"] = page.url
        seen["nojs_cookies"] = v.cookie()
        seen["nojs_link_after"] = page.locator(".concierge-noscript").count()
        v.close()
        browser.close()
    seen["csp_violations"] = csp
    seen["axe"] = violations
    seen["errors"] = errors
    emit(seen)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # a timeout names the step that did not happen
        sys.exit(f"browser check failed: {e}")
