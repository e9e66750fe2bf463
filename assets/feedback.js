// Concierge feedback prompt. Served by the proxy under its reserved prefix; no dependencies, no inline script
// or style (works under a Content-Security-Policy of 'self'). The proxy places one inert container per prompt
// (<div data-concierge-feedback hidden> with the rule, rule-set version, page and question as data attributes);
// this script shows the first one the visitor has not yet answered or dismissed, once per visitor, page and rule.
// What the visitor types is only ever set as text, never as HTML. The prompt's own words come in the
// visitor's language: the proxy fills them in at the end, as for the banner. The prompt draws itself in a shadow root of
// its container, with its own stylesheet (feedback.css): the page's styles cannot reach it, nor its the page.
(function (T) {
  "use strict";
  var script = document.currentScript;
  if (!script || !window.fetch || !window.URLSearchParams) return;
  var endpoint = new URL("feedback", script.src).pathname;
  var stylesheet = new URL("feedback.css", script.src).pathname;
  var FOCUSABLE = "a[href], button:not([disabled]), input:not([disabled]):not([type=hidden]), select:not([disabled]), " +
    "textarea:not([disabled]), [tabindex]:not([tabindex='-1'])";

  // The page's next Tab stop after `host`: where the keyboard goes once the prompt is closed.
  function nextStop(host) {
    var all = document.querySelectorAll(FOCUSABLE);
    for (var i = 0; i < all.length; i++) {
      var n = all[i];
      if (n === host || host.contains(n)) continue;
      if (!(host.compareDocumentPosition(n) & Node.DOCUMENT_POSITION_FOLLOWING)) continue;
      if (n.getClientRects().length === 0) continue;
      return n;
    }
    return null;
  }
  var MAX_COMMENT = 500;

  function storage() {
    try {
      var s = window.localStorage;
      s.setItem("concierge-feedback-probe", "1");
      s.removeItem("concierge-feedback-probe");
      return s;
    } catch (e) {
      return null; // storage blocked: without it we cannot ask only once, so we do not ask.
    }
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    (children || []).forEach(function (c) {
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }

  function send(prompt, fields) {
    var body = new URLSearchParams();
    body.set("rule", prompt.rule);
    body.set("version", prompt.version);
    body.set("page", prompt.page);
    Object.keys(fields).forEach(function (k) { body.set(k, fields[k]); });
    return fetch(endpoint, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: body.toString(),
      keepalive: true
    }).then(function (r) { return r.ok; }, function () { return false; });
  }

  function start() {
    var store = storage();
    if (!store) return;
    var containers = document.querySelectorAll("[data-concierge-feedback]");
    for (var i = 0; i < containers.length; i++) {
      var c = containers[i];
      var prompt = {
        rule: c.getAttribute("data-rule") || "",
        version: c.getAttribute("data-version") || "",
        page: c.getAttribute("data-page") || "/",
        question: c.getAttribute("data-question") || "",
        comment: c.getAttribute("data-comment") === "1"
      };
      if (!prompt.rule || !prompt.question) continue;
      var key = "concierge-feedback:" + prompt.rule + ":" + prompt.page;
      var state = store.getItem(key);
      if (state === "done") continue;
      show(c, prompt, store, key, state);
      return; // one prompt at a time
    }
  }

  function show(container, prompt, store, key, state) {
    var id = "concierge-feedback-" + Math.random().toString(36).slice(2);
    var status = el("p", { "class": "cf-status", role: "status", "aria-live": "polite" });
    var close = el("button", { type: "button", "class": "cf-close", "aria-label": T.feedback_dismiss }, ["\u00d7"]);
    var yes = el("button", { type: "button", "class": "cf-button", "data-answer": "yes" }, [T.feedback_yes]);
    var no = el("button", { type: "button", "class": "cf-button", "data-answer": "no" }, [T.feedback_no]);
    var answers = el("div", { "class": "cf-answers", role: "group", "aria-labelledby": id }, [yes, no]);
    var box = el("section", { "class": "cf-box", role: "region", "aria-labelledby": id }, [
      close,
      el("p", { id: id, "class": "cf-question" }, [prompt.question]),
      answers,
      status
    ]);
    container.textContent = "";
    var root = container.attachShadow ? container.attachShadow({ mode: "open" }) : container;
    var link = el("link", { rel: "stylesheet", href: stylesheet });
    box.setAttribute("hidden", "");
    var reveal = function () { box.removeAttribute("hidden"); };
    link.addEventListener("load", reveal);
    link.addEventListener("error", reveal);
    root.appendChild(link);
    root.appendChild(box);
    container.removeAttribute("hidden");
    function hasFocus() {
      return document.activeElement === container || container.contains(document.activeElement);
    }

    if (state !== "shown") {
      store.setItem(key, "shown");
      send(prompt, { event: "shown" });
    }

    function finish(message) {
      store.setItem(key, "done");
      box.replaceChildren(status);
      status.textContent = message;
      // Keep keyboard focus in the prompt (it would drop to <body> with the removed form).
      status.setAttribute("tabindex", "-1");
      status.focus();
      window.setTimeout(function () {
        var next = hasFocus() ? nextStop(container) : null;
        container.setAttribute("hidden", "");
        if (next) next.focus();
      }, 4000);
    }

    var answered = null; // the answer given, once it is recorded

    close.addEventListener("click", function () {
      store.setItem(key, "done");
      // The keyboard goes on to the page's next Tab stop instead of falling back to <body>.
      var next = hasFocus() ? nextStop(container) : null;
      container.setAttribute("hidden", "");
      if (next) next.focus();
      // Closing after answering loses nothing: the answer was recorded when it was given.
      if (answered === null) send(prompt, { event: "dismiss" });
    });
    // Escape closes the prompt, as the close button does.
    container.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && !container.hasAttribute("hidden")) {
        event.preventDefault();
        close.click();
      }
    });

    function failed(button) {
      if (button) button.disabled = false;
      status.textContent = T.feedback_failed;
    }

    // The optional comment, sent as its own event after the answer.
    function askComment(value) {
      var fieldId = id + "-comment";
      var text = el("textarea", { id: fieldId, "class": "cf-comment", maxlength: String(MAX_COMMENT), rows: "3" });
      var submit = el("button", { type: "submit", "class": "cf-button" }, [T.feedback_send]);
      var form = el("form", { "class": "cf-form" }, [
        el("label", { "for": fieldId }, [T.feedback_comment]),
        text,
        submit
      ]);
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        var comment = text.value.trim().slice(0, MAX_COMMENT);
        if (!comment) return finish(T.feedback_thanks);
        submit.disabled = true;
        send(prompt, { event: "comment", answer: value, comment: comment }).then(function (ok) {
          if (ok) finish(T.feedback_thanks); else failed(submit);
        });
      });
      answers.replaceWith(form);
      text.focus();
    }

    [yes, no].forEach(function (button) {
      button.addEventListener("click", function () {
        var value = button.getAttribute("data-answer");
        yes.disabled = no.disabled = true;
        // The answer is posted the moment it is given.
        send(prompt, { event: "answer", answer: value }).then(function (ok) {
          if (!ok) {
            yes.disabled = no.disabled = false;
            return failed(null);
          }
          answered = value;
          store.setItem(key, "done");
          if (prompt.comment) askComment(value); else finish(T.feedback_thanks);
        });
      });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})(__CONCIERGE_TEXTS__);
