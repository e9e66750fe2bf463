//! Concierge: a privacy-first consent and firmographic personalization reverse proxy.
//!
//! Every module, one line each (dependency direction points down the table; nothing imports `cli`, `app` or
//! `proxy`; `pipeline` and the domain modules below it know nothing of hyper or tokio, except that `audit`
//! awaits durability with a tokio watch channel). ARCHITECTURE.md tells the story of one request through them.
//!
//! | module          | owns |
//! |-----------------|------|
//! | `cli`           | arguments, exit codes, human output: serve, inspect (check/explain/lookup/consent), audit |
//! | `app`           | wiring: listeners, TLS reloader, admin endpoint, source reloads, signals, graceful shutdown |
//! | `console`       | the read-only console on the admin listener: overview, rules, audit (maud pages from the CLI's functions) |
//! | `demo`          | the built-in demo origin serving `examples/site/`, and the demo's settings |
//! | `proxy`         | the hyper service: one file per phase, the proxy's own endpoints, the upstream client |
//! | `accesslog`     | the access log: lines formatted on the request's thread, written in batches by a thread of its own |
//! | `metrics`       | counters, histograms, Prometheus exposition |
//! | `tls`           | certificate loading, SNI selection, reload keeping the last good set |
//! | `pipeline`      | the per-request decision (classify → plan → changes → record), runtime-free, shared by proxy and CLI |
//! | `classify`      | location → jurisdiction, signals → Decision, the company lookup only with the Decision's permit |
//! | `sources`       | one generation of company tables and rules, loaded, validated and swapped together |
//! | `rules`         | rule files: schema, compile (validation), plan (matching, conflicts, verdicts), templates |
//! | `rewrite`       | streaming HTML rewriting with lol_html, content codings, charsets |
//! | `experiments`   | experiment files, assignment by account, control groups, exposure/conversion records, the report and its statistics |
//! | `feedback`      | the feedback prompt, its widget markup, the answers and their report |
//! | `audit`         | the tamper-evident log: records, hash chain, writer, checkpoints, the record gate, verify, queries |
//! | `consent`       | consent signals (TCF v2.2, GPP, USP, GPC, first-party cookie) and the tier Decision |
//! | `firmographics` | IP → company and location: prefix tables, account files, CSV, MMDB |
//! | `client_ip`     | trusted proxies, X-Forwarded-For / Forwarded, PROXY protocol parsing |
//! | `config`        | the TOML file read raw, then validated per section into `Settings` |
//! | `host`          | what a valid host[:port] is |
//! | `hint`          | "did you mean": the closest name by edit distance |
//! | `tomlfile`      | reading hand-written TOML: every type error and unknown key in one pass, in plain words |
//! | `places`        | region codes in words ("California, United States"), from ISO's names |
//! | `watch`         | noticing that files changed (polled fingerprints) |
//!
//! Modules the binary, the integration tests, the benchmarks and the fuzz targets need are `pub`; the rest are
//! `pub(crate)`.
#![forbid(unsafe_code)]

pub(crate) mod accesslog;
pub mod app;
pub mod audit;
pub(crate) mod classify;
pub mod cli;
pub mod client_ip;
pub mod config;
pub mod consent;
pub(crate) mod console;
pub mod demo;
pub mod experiments;
pub mod feedback;
pub mod firmographics;
pub(crate) mod hint;
pub(crate) mod host;
pub(crate) mod metrics;
pub(crate) mod pipeline;
pub(crate) mod places;
pub mod postgres;
pub(crate) mod preview;
pub(crate) mod proxy;
pub(crate) mod records;
pub mod rewrite;
pub mod rules;
pub(crate) mod sources;
pub(crate) mod tls;
pub(crate) mod tomlfile;
pub(crate) mod watch;
