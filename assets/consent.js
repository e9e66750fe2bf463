// Concierge consent banner. Served by the proxy under its reserved prefix; no dependencies, no inline script
// or style (works under a Content-Security-Policy of 'self'). Every choice has equal prominence. Without this
// script, the page's <noscript> link leads to the choices page: plain forms that post to the same endpoint.
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !window.fetch || !window.URLSearchParams) return;
  var endpoint = new URL("consent", script.src).pathname;
  var why = new URL("why", script.src).pathname;

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    (children || []).forEach(function (c) {
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }

  function tier(name, title, text) {
    var id = "concierge-consent-" + name;
    return el("div", { "class": "cc-tier" }, [
      el("input", { type: "checkbox", id: id, name: name, value: "on", "aria-describedby": id + "-text" }),
      el("label", { "for": id }, [title]),
      el("p", { id: id + "-text", "class": "cc-tier-text" }, [text])
    ]);
  }

  function show() {
    if (document.getElementById("concierge-consent")) return;
    var here = location.pathname + location.search;
    var details = el("fieldset", { id: "concierge-consent-details", "class": "cc-details", hidden: "" }, [
      el("legend", {}, ["Choose what we may use"]),
      el("p", { "class": "cc-tier-text" }, [
        "Always on: the page you are on, the campaign link you followed and your country. None of this identifies you."
      ]),
      tier("firmographic", "Your organization",
        "We may look up which company your network belongs to, to show content for your industry or company."),
      tier("personal", "You personally",
        "We may remember you across visits to tailor what you see."),
      el("button", { type: "submit", name: "choice", value: "custom", "class": "cc-button" }, ["Save my choices"])
    ]);
    var more = el("button", {
      type: "button", "class": "cc-button", "aria-expanded": "false", "aria-controls": "concierge-consent-details"
    }, ["Choose"]);
    var form = el("form", { method: "post", action: endpoint, "class": "cc-form" }, [
      el("input", { type: "hidden", name: "return", value: here }),
      el("div", { "class": "cc-actions" }, [
        el("button", { type: "submit", name: "choice", value: "accept", "class": "cc-button" }, ["Accept all"]),
        el("button", { type: "submit", name: "choice", value: "reject", "class": "cc-button" }, ["Reject all"]),
        more
      ]),
      details
    ]);
    var banner = el("section", {
      id: "concierge-consent", "class": "cc-banner", role: "region", "aria-labelledby": "concierge-consent-title"
    }, [
      el("h2", { id: "concierge-consent-title", "class": "cc-title" }, ["Your privacy choices"]),
      el("p", { "class": "cc-text" }, [
        "We can tailor this site to your organization. We only do so if you agree. ",
        el("a", { href: endpoint + "?return=" + encodeURIComponent(here) }, ["More about your choices"]),
        " · ",
        el("a", { href: why + "?page=" + encodeURIComponent(location.pathname) }, ["Why am I seeing this?"])
      ]),
      form
    ]);
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
      fetch(endpoint, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded" },
        body: body.toString()
      }).then(function (r) {
        if (!r.ok) throw new Error("status " + r.status);
        return r.json();
      }).then(function (result) {
        banner.parentNode.removeChild(banner);
        if (result.firmographic || result.personal) location.reload();
      }).catch(function () {
        // Fall back to a plain form post; the endpoint redirects back here.
        var input = el("input", { type: "hidden", name: "choice", value: button.value });
        form.appendChild(input);
        form.submit();
      });
    });
    document.body.appendChild(banner);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", show);
  else show();
})();
