// Concierge consent banner. Served by the proxy under its reserved prefix, with the texts of one language
// filled in at the end (the proxy replaces the marker there); no dependencies, no inline script or style (works under a
// Content-Security-Policy of 'self'). Every choice has equal prominence.
//
// The banner lives in a shadow root of its own element, placed first in <body>: the page's styles cannot reach
// it (a dark site's heading colour, a global button style), its styles cannot reach the page, and it is the
// first thing the Tab key reaches. Without this script, the page's <noscript> link leads to the choices page:
// plain forms that post to the same endpoint.
(function (T) {
  "use strict";
  var script = document.currentScript;
  if (!script || !window.fetch || !window.URLSearchParams) return;
  var endpoint = new URL("consent", script.src).pathname;
  var why = new URL("why", script.src).pathname;
  var stylesheet = new URL("consent.css", script.src).pathname;
  var FOCUSABLE = "a[href], button:not([disabled]), input:not([disabled]):not([type=hidden]), select:not([disabled]), " +
    "textarea:not([disabled]), [tabindex]:not([tabindex='-1'])";

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    (children || []).forEach(function (c) {
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }

  function tier(name, title, text) {
    var id = "cc-" + name;
    return el("div", { "class": "cc-tier" }, [
      el("input", { type: "checkbox", id: id, name: name, value: "on", "aria-describedby": id + "-text" }),
      el("label", { "for": id }, [title]),
      el("p", { id: id + "-text", "class": "cc-tier-text" }, [text])
    ]);
  }

  // The page's first Tab stop after the banner: where a keyboard user goes on once they have chosen.
  function nextStop(host) {
    var all = document.querySelectorAll(FOCUSABLE);
    for (var i = 0; i < all.length; i++) {
      var n = all[i];
      if (n === host || host.contains(n)) continue;
      if (!(host.compareDocumentPosition(n) & Node.DOCUMENT_POSITION_FOLLOWING)) continue;
      if (n.getClientRects().length === 0) continue; // not rendered
      return n;
    }
    return null;
  }

  function show() {
    if (document.getElementById("concierge-consent")) return;
    var here = location.pathname + location.search;
    var host = el("div", { id: "concierge-consent" });
    var root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
    var details = el("fieldset", { id: "cc-details", "class": "cc-details", hidden: "" }, [
      el("legend", {}, [T.legend]),
      el("p", { "class": "cc-tier-text" }, [T.always_on]),
      tier("firmographic", T.firmographic, T.firmographic_text),
      tier("personal", T.personal, T.personal_text),
      el("button", { type: "submit", name: "choice", value: "custom", "class": "cc-button" }, [T.save])
    ]);
    var more = el("button", {
      type: "button", "class": "cc-button", "aria-expanded": "false", "aria-controls": "cc-details"
    }, [T.choose]);
    var form = el("form", { method: "post", action: endpoint, "class": "cc-form" }, [
      el("input", { type: "hidden", name: "return", value: here }),
      el("input", { type: "hidden", name: "lang", value: T.lang }),
      el("div", { "class": "cc-actions" }, [
        el("button", { type: "submit", name: "choice", value: "accept", "class": "cc-button" }, [T.accept]),
        el("button", { type: "submit", name: "choice", value: "reject", "class": "cc-button" }, [T.reject]),
        more
      ]),
      details
    ]);
    var links = [
      el("a", { href: endpoint + "?return=" + encodeURIComponent(here) }, [T.more])
    ];
    if (T.policy_url) links.push(el("a", { href: T.policy_url }, [T.policy]));
    links.push(el("a", { href: why + "?page=" + encodeURIComponent(location.pathname) }, [T.why]));
    var linkLine = el("p", { "class": "cc-links" }, []);
    links.forEach(function (a, i) {
      if (i) linkLine.appendChild(document.createTextNode(" · "));
      linkLine.appendChild(a);
    });
    var banner = el("section", {
      "class": "cc-banner", role: "region", "aria-labelledby": "cc-title", lang: T.lang, hidden: ""
    }, [
      el("h2", { id: "cc-title", "class": "cc-title" }, [T.title]),
      el("p", { "class": "cc-text" }, [T.banner_text]),
      linkLine,
      form
    ]);
    // Announced once the banner is gone (a live region must exist before its text changes).
    var status = el("p", { "class": "cc-visually-hidden", role: "status", lang: T.lang });
    more.addEventListener("click", function () {
      var open = details.hasAttribute("hidden");
      if (open) details.removeAttribute("hidden"); else details.setAttribute("hidden", "");
      more.setAttribute("aria-expanded", open ? "true" : "false");
      if (open) details.querySelector("input").focus();
    });
    form.addEventListener("submit", function (event) {
      var button = event.submitter;
      if (!button || !button.value) return;
      event.preventDefault();
      var body = new URLSearchParams(new FormData(form));
      body.set("choice", button.value);
      var hadFocus = document.activeElement === host || host.contains(document.activeElement);
      fetch(endpoint, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded" },
        body: body.toString()
      }).then(function (r) {
        if (!r.ok) throw new Error("status " + r.status);
        return r.json();
      }).then(function (result) {
        if (result.firmographic || result.personal) {
          location.reload();
          return;
        }
        var next = hadFocus ? nextStop(host) : null;
        banner.parentNode.removeChild(banner);
        status.textContent = T.saved;
        // The keyboard goes on to the page's first Tab stop instead of falling back to <body>.
        if (next) next.focus();
      }).catch(function () {
        // Fall back to a plain form post; the endpoint redirects back here.
        var input = el("input", { type: "hidden", name: "choice", value: button.value });
        form.appendChild(input);
        form.submit();
      });
    });
    // Shown once its stylesheet is in (it is preloaded by the page), so it never flashes unstyled.
    var link = el("link", { rel: "stylesheet", href: stylesheet });
    var reveal = function () { banner.removeAttribute("hidden"); };
    link.addEventListener("load", reveal);
    link.addEventListener("error", reveal);
    root.appendChild(link);
    root.appendChild(status);
    root.appendChild(banner);
    document.body.insertBefore(host, document.body.firstChild);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", show);
  else show();
})(__CONCIERGE_TEXTS__);
