//! The console: read-only pages for marketers and compliance reviewers, served on the admin listener under
//! `/console/` (`[console] enabled = true`, off by default).
//!
//! Every page is rendered on the server from the same library functions the CLI calls (`audit::verify`,
//! `audit::query`, the rule set the proxy serves with), with compile-time checked templates (maud) and no
//! script: it works without JavaScript, under `Content-Security-Policy: default-src 'self'`.
//!
//! Invariants:
//! - Nothing is served without the token: `Authorization: Bearer <token>`, or HTTP Basic credentials whose
//!   password is the token (any user name), compared in constant time; anything else is 401 on every route.
//! - Every answer is `Cache-Control: no-store`; the token is never logged or echoed.
//! - Query parameters are input like any other: a bad one is a clear message on the page (400), never a 500;
//!   searches are paged and bounded ([`audit::MAX_PAGE`] records a page, [`audit::SCAN_LIMIT`] records read).
//!
//! This module is free of hyper and tokio: `app.rs` hands it a [`Request`] on a blocking thread and sends the
//! [`Reply`].

mod audit;
mod auth;
mod experiments;
mod feedback;
mod index;
mod instances;
mod overview;
mod preview;
mod rules;
mod verified;
mod view;

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::sources::Sources;

pub(crate) use auth::Credential;
pub use preview::OriginPage;

/// One request to the console, as plain values.
pub struct Request<'a> {
    pub method: &'a str,
    /// The path under the admin listener (`/console/audit`).
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub authorization: Option<&'a [u8]>,
    /// The origin's page for a preview ([`Console::preview_origin`] said which), fetched by the caller.
    pub original: Option<Result<OriginPage, String>>,
    /// `Sec-Fetch-Site` said another site (or a sibling subdomain) made the browser ask.
    pub cross_site: bool,
}

/// What to answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// `Content-Disposition: attachment; filename=…` for downloads.
    pub download: Option<String>,
    /// `WWW-Authenticate` is due (401).
    pub challenge: bool,
    /// A previewed page for a frame: [`FRAME_HEADERS`] instead of [`SECURITY_HEADERS`].
    pub frame: bool,
}

impl Reply {
    fn html(status: u16, body: String) -> Reply {
        Reply {
            status,
            content_type: "text/html; charset=utf-8",
            body: body.into_bytes(),
            download: None,
            challenge: false,
            frame: false,
        }
    }

    fn text(status: u16, body: &str) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.as_bytes().to_vec(),
            download: None,
            challenge: false,
            frame: false,
        }
    }
}

/// The headers every console answer carries (besides its content type).
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("cache-control", "no-store"),
    (
        "content-security-policy",
        "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
];

/// The headers of a previewed page in its frame: a sandbox (no script, an opaque origin), nothing loaded but
/// inline styles and data: images, framed only by the console itself.
pub const FRAME_HEADERS: &[(&str, &str)] = &[
    ("cache-control", "no-store"),
    (
        "content-security-policy",
        "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'; base-uri 'none'; form-action 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "SAMEORIGIN"),
];

/// The `WWW-Authenticate` challenge of a 401 (Basic first, so a browser asks for the token).
pub const CHALLENGE: &str = "Basic realm=\"Concierge console\", Bearer realm=\"Concierge console\"";

/// The console's state: what it reads, shared with the proxy.
pub struct Console {
    credential: Credential,
    settings: Arc<Settings>,
    metrics: Arc<Metrics>,
    sources: Arc<ArcSwap<Sources>>,
    last_reload: crate::sources::ReloadStatus,
    frames: preview::Frames,
    /// This instance's shipping to the record store (`/healthz/records`), when it ships.
    records_health: Option<Arc<crate::postgres::shipper::Health>>,
    /// The audit and feedback streams, indexed as they grow.
    audit_index: std::sync::Mutex<index::StreamIndex>,
    feedback_index: std::sync::Mutex<index::StreamIndex>,
    verifier: verified::Verifier,
}

impl Console {
    pub fn new(
        credential: Credential,
        settings: Arc<Settings>,
        metrics: Arc<Metrics>,
        sources: Arc<ArcSwap<Sources>>,
        last_reload: crate::sources::ReloadStatus,
    ) -> Console {
        let audit_dir = settings.audit.dir.clone();
        Console {
            audit_index: std::sync::Mutex::new(index::StreamIndex::new(
                audit_dir.join(crate::audit::AUDIT_STREAM),
                index::Kind::Audit,
            )),
            feedback_index: std::sync::Mutex::new(index::StreamIndex::new(
                audit_dir.join(crate::audit::FEEDBACK_STREAM),
                index::Kind::Feedback,
            )),
            verifier: verified::Verifier::default(),
            credential,
            settings,
            metrics,
            sources,
            last_reload,
            frames: preview::Frames::default(),
            records_health: None,
        }
    }

    /// With this instance's shipper (the Instances page shows what `/healthz/records` says).
    pub fn with_records_health(
        mut self,
        health: Option<Arc<crate::postgres::shipper::Health>>,
    ) -> Console {
        self.records_health = health;
        self
    }

    /// For an admitted preview request, what the caller should fetch from the origin first: the target
    /// (`/path?query`) and the host the URL named. `None` for any other request (or a bad form: the page says
    /// why without a fetch).
    pub fn preview_origin(&self, req: &Request<'_>) -> Option<(String, Option<String>)> {
        if req.path != "/console/rules/preview"
            || req.method != "GET"
            || self.refusal(req.authorization, req.cross_site).is_some()
        {
            return None;
        }
        let q = Query::parse(req.query.unwrap_or("")).ok()?;
        let form = preview::Form::parse(&q).ok()??;
        Some(form.origin_target())
    }

    fn last_reload(&self) -> Option<crate::sources::LastReload> {
        self.last_reload
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Index the log and verify it on a thread of its own, so the first visitor does not wait for either.
    pub fn warm(self: &Arc<Self>) {
        let me = self.clone();
        let _ = std::thread::Builder::new()
            .name("console-index".into())
            .spawn(move || {
                for (name, index) in [("audit", &me.audit_index), ("feedback", &me.feedback_index)] {
                    let mut index = index.lock().unwrap_or_else(|p| p.into_inner());
                    if let Err(e) = index.refresh() {
                        tracing::warn!(stream = name, error = %e, "the console cannot index the log");
                    }
                }
                if let (_, Ok(key)) = audit::trusted_key(&me) {
                    let _ = me.verifier.answer(&me.audit_dir(), &key);
                }
            });
    }

    /// A stream's index, brought up to date with what was appended since it was last read.
    fn index(
        &self,
        stream: &str,
    ) -> std::io::Result<std::sync::MutexGuard<'_, index::StreamIndex>> {
        let lock = if stream == crate::audit::FEEDBACK_STREAM {
            &self.feedback_index
        } else {
            &self.audit_index
        };
        let mut index = lock.lock().unwrap_or_else(|p| p.into_inner());
        index.refresh()?;
        Ok(index)
    }

    fn audit_dir(&self) -> PathBuf {
        self.settings.audit.dir.clone()
    }

    /// The record store (`[audit.postgres]`), which the results and the search read over every instance.
    fn store(&self) -> Option<crate::records::Records> {
        self.settings
            .audit
            .postgres
            .clone()
            .map(crate::records::Records::Store)
    }

    /// The answer to a request refused before any work: without the token (401), or made by another site
    /// (403: the browser holds the console's credentials, so a page elsewhere could otherwise make it search,
    /// export or fetch from the origin).
    pub fn refusal(&self, authorization: Option<&[u8]>, cross_site: bool) -> Option<Reply> {
        if !self.credential.admits(authorization) {
            let mut r = Reply::text(401, "The console needs its token: Authorization: Bearer <token>, or HTTP Basic credentials with the token as the password.\n");
            r.challenge = true;
            return Some(r);
        }
        if cross_site {
            return Some(Reply::text(
                403,
                "The console answers only requests made from its own pages (Sec-Fetch-Site).\n",
            ));
        }
        None
    }

    /// Answer one request.
    pub fn handle(&self, req: &Request<'_>) -> Reply {
        if let Some(r) = self.refusal(req.authorization, req.cross_site) {
            return r;
        }
        if req.method != "GET" && req.method != "HEAD" {
            return Reply::text(405, "The console is read-only: GET only.\n");
        }
        let query = match Query::parse(req.query.unwrap_or("")) {
            Ok(q) => q,
            Err(e) => return Reply::html(400, view::error_page("Bad request", &e)),
        };
        match req.path {
            "/console" | "/console/" => Reply::html(
                200,
                overview::page(
                    &self.metrics,
                    &self.sources.load(),
                    self.last_reload().as_ref(),
                ),
            ),
            "/console/console.css" => Reply {
                status: 200,
                content_type: "text/css; charset=utf-8",
                body: view::CSS.as_bytes().to_vec(),
                download: None,
                challenge: false,
                frame: false,
            },
            "/console/favicon.svg" => Reply {
                status: 200,
                content_type: "image/svg+xml",
                body: view::FAVICON.as_bytes().to_vec(),
                download: None,
                challenge: false,
                frame: false,
            },
            "/console/rules" => Reply::html(
                200,
                rules::page(&self.sources.load(), &query, self.last_reload().as_ref()),
            ),
            "/console/rules/preview" => preview::page(self, &query, req.original.as_ref()),
            "/console/rules/preview/frame" => preview::frame(self, &query),
            "/console/experiments" => experiments::page(self, &query),
            "/console/feedback" => feedback::page(self, &query),
            "/console/instances" => instances::page(self),
            "/console/audit" => audit::search_page(self, &query),
            "/console/audit/verify" => audit::verify_page(self),
            "/console/audit/record" => audit::record_page(self, &query),
            "/console/audit/export.csv" => audit::export(self, &query, audit::Export::Csv),
            "/console/audit/export.jsonl" => audit::export(self, &query, audit::Export::Jsonl),
            _ => Reply::html(
                404,
                view::error_page(
                    "Not found",
                    "There is no such console page. The pages are Overview, Rules, Experiments, Feedback, Instances and Audit.",
                ),
            ),
        }
    }
}

/// A query string decoded: each key once (a repeated key is refused, it would be ambiguous), at most 32 keys.
#[derive(Debug, Default)]
pub(crate) struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    fn parse(raw: &str) -> Result<Query, String> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for part in raw.split('&').filter(|p| !p.is_empty()) {
            if pairs.len() == 32 {
                return Err("The address has too many parameters.".into());
            }
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let (Some(k), Some(v)) = (
                crate::consent::choice::percent_decode(k),
                crate::consent::choice::percent_decode(v),
            ) else {
                return Err(
                    "The address holds a parameter that is not valid percent-encoded UTF-8.".into(),
                );
            };
            if pairs.iter().any(|(have, _)| *have == k) {
                return Err(format!("The parameter `{k}` is given twice."));
            }
            pairs.push((k, v.trim().to_string()));
        }
        Ok(Query { pairs })
    }

    /// `since` and `until` (dates or RFC 3339 times, canonical for comparing with records' `time`), checked:
    /// each a date, `since` before `until`.
    pub(crate) fn range(&self) -> Result<(Option<String>, Option<String>), String> {
        let time = |key: &str| -> Result<Option<String>, String> {
            match self.get(key) {
                None => Ok(None),
                Some(t) => crate::audit::query::parse_time(t).map(Some).ok_or_else(|| {
                    format!("“{t}” is not a date: write it as 2026-11-24, or as an RFC 3339 time (2026-11-24T10:00:00Z).")
                }),
            }
        };
        let since = time("since")?;
        let until = time("until")?;
        if let (Some(s), Some(u)) = (&since, &until) {
            if s >= u {
                return Err("“From” must be before “until”.".into());
            }
        }
        Ok((since, until))
    }

    /// A free-text parameter (an id, a domain): at most 200 characters, no control characters.
    pub(crate) fn term(&self, key: &str, what: &str) -> Result<Option<String>, String> {
        match self.get(key) {
            Some(v) if v.chars().count() > 200 => {
                Err(format!("The {what} is longer than 200 characters."))
            }
            Some(v) if v.chars().any(char::is_control) => {
                Err(format!("The {what} holds control characters."))
            }
            other => Ok(other.map(str::to_string)),
        }
    }

    /// A parameter's value; an empty one counts as absent (an empty form field).
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

#[cfg(test)]
mod tests;
