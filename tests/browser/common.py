"""What the browser scripts share: launching Debian's Chromium through Playwright (never a downloaded browser),
the focused element through shadow roots, colour contrast, axe-core, CSP violations and screenshots."""

import json
import os
import pathlib

ARGS = [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

HERE = pathlib.Path(__file__).resolve().parent
AXE = HERE / "node_modules" / "axe-core" / "axe.min.js"


def launch(p):
    return p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)


# The focused element, through shadow roots (the banner and the prompt draw themselves in one).
ACTIVE = """() => { let a = document.activeElement;
  while (a && a.shadowRoot && a.shadowRoot.activeElement) a = a.shadowRoot.activeElement;
  return a ? {tag: a.tagName.toLowerCase(), id: a.id || null, cls: a.className || null,
              text: (a.textContent || '').trim().slice(0, 60)} : null; }"""

# Records Content-Security-Policy violations from the first byte on (an init script is not subject to the CSP).
CSP_WATCH = """window.__cspViolations = [];
document.addEventListener('securitypolicyviolation',
  e => window.__cspViolations.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline')));"""

# The contrast ratio (WCAG 2) of an element's text against the first opaque background up its tree (shadow hosts
# crossed).
CONTRAST = """(el) => {
  const rgb = c => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = c => { const [r, g, b] = rgb(c).slice(0, 3).map(v => { v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  let bg = null, n = el;
  while (n) {
    if (n.nodeType === 1) { const c = getComputedStyle(n).backgroundColor; const a = rgb(c);
      if (a.length === 3 || (a.length === 4 && a[3] === 1)) { bg = c; break; } }
    n = n.parentNode || (n.host || null);
  }
  bg = bg || 'rgb(255, 255, 255)';
  const fg = getComputedStyle(el).color;
  const [l1, l2] = [lum(fg), lum(bg)].sort((x, y) => y - x);
  return {ratio: Math.round((l1 + 0.05) / (l2 + 0.05) * 100) / 100, color: fg, background: bg};
}"""


def axe(page):
    """axe-core's serious and critical violations on the page (open shadow roots included), as 'rule: target'."""
    page.evaluate(AXE.read_text())  # evaluated by the DevTools protocol: not subject to the page's CSP
    result = page.evaluate("""async () => {
      const r = await axe.run(document, {resultTypes: ['violations']});
      return r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
        .map(v => v.id + ': ' + v.nodes.map(n => JSON.stringify(n.target)).join(', '));
    }""")
    return result


def screenshot(page, name):
    """Save a screenshot as SCREENSHOTS_DIR/name (scripts/screenshots sets it to docs/screenshots)."""
    out = os.environ.get("SCREENSHOTS_DIR")
    if out:
        pathlib.Path(out).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(pathlib.Path(out) / name))


def emit(seen):
    print(json.dumps(seen))
