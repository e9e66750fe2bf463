//! Concierge: a privacy-first consent and firmographic personalization reverse proxy.
//!
//! Module map (dependency direction points down; nothing imports `app` or `proxy`):
//!
//! | module     | owns |
//! |------------|------|
//! | `cli`      | arguments, exit codes, human output |
//! | `app`      | wiring: listeners, TLS reloader, admin endpoint, signals, graceful shutdown |
//! | `demo`     | the built-in demo origin serving `examples/site/` |
//! | `config`   | TOML read raw, then validated into `Settings` |
//! | `consent`  | consent signals (TCF v2.2, GPP, USP, GPC, first-party cookie) and the tier Decision |
//! | `client_ip`| trusted proxies, X-Forwarded-For / Forwarded, PROXY protocol parsing |
//! | `host`     | what a valid host[:port] is |
//! | `firmographics` | IP → company and location: prefix tables, sources |
//! | `sources`  | one generation of company tables and rules, swapped together |
//! | `tls`      | certificate loading, SNI selection, reload keeping the last good set |
//! | `proxy`    | the per-request phases, header hygiene, upstream client, error responses |
//! | `metrics`  | counters, histograms, Prometheus exposition |
//! | `pipeline` | the per-request decision (classify → plan → changes → record), runtime-free, shared by proxy and CLI |
#![forbid(unsafe_code)]

pub mod app;
pub mod audit;
pub mod classify;
pub mod cli;
pub mod client_ip;
pub mod config;
pub mod consent;
pub mod demo;
pub mod feedback;
pub mod firmographics;
pub mod host;
pub mod metrics;
pub mod pipeline;
pub mod proxy;
pub mod rewrite;
pub mod rules;
pub mod sources;
pub mod tls;
pub mod watch;
