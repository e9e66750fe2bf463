//! Metrics: every counter and histogram the proxy exposes, and their Prometheus text exposition.
//!
//! One [`Metrics`] value lives for the whole process and is shared by reference; handles are cheap clones of
//! atomics, so the hot path never takes a lock except the read lock of a labelled family.

use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabel {
    listener: String,
}

/// Why a request to the origin failed.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum UpstreamErrorKind {
    connect,
    connect_timeout,
    response_timeout,
    reset,
    tls,
    other,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamErrorLabel {
    kind: UpstreamErrorKind,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ReloadResult {
    success,
    failure,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabel {
    result: ReloadResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceReloadLabel {
    source: String,
    result: ReloadResult,
}

/// Why a client connection ended with an error before a request could be answered by the proxy.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ClientErrorKind {
    /// Malformed request line or headers, ambiguous framing (answered 400 by hyper).
    malformed,
    /// Request head over the limits (answered 431 by hyper).
    too_large,
    /// Request head not complete within `timeouts.client_header`.
    header_timeout,
    /// PROXY protocol header missing, malformed, too slow, or sent by an untrusted peer.
    proxy_protocol,
    /// An HTTP/2 client reset too many streams (rapid reset): GOAWAY(ENHANCE_YOUR_CALM), connection closed.
    rapid_reset,
    /// I/O or protocol error (reset, HTTP/2 protocol error).
    other,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClientErrorLabel {
    kind: ClientErrorKind,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabel {
    regime: &'static str,
    highest_tier: &'static str,
    banner: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: &'static str,
}

/// The process-wide metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<CodeLabel, Counter>,
    duration: Histogram,
    upstream_errors: Family<UpstreamErrorLabel, Counter>,
    open_connections: Family<ListenerLabel, Gauge>,
    connections: Family<ListenerLabel, Counter>,
    tls_reloads: Family<ReloadLabel, Counter>,
    tls_handshake_errors: Counter,
    access_log_dropped: Counter,
    aborted_responses: Counter,
    client_errors: Family<ClientErrorLabel, Counter>,
    open_tunnels: Gauge,
    source_reloads: Family<SourceReloadLabel, Counter>,
    decisions: Family<DecisionLabel, Counter>,
    company_lookups: Family<ResultLabel, Counter>,
    consent_records: Family<ResultLabel, Counter>,
    consent_choices: Family<ActionLabel, Counter>,
    rewrites: Family<ResultLabel, Counter>,
    origin_cache: Family<ResultLabel, Counter>,
    origin_cache_bytes: Gauge,
    decision_records: Family<ResultLabel, Counter>,
    feedback_records: Family<FeedbackLabel, Counter>,
    rate_limited: Family<EndpointLabel, Counter>,
    experiment_records: Family<ExperimentRecordLabel, Counter>,
    conversions_unrecorded: Family<ReasonLabel, Counter>,
    ship: ShipMetrics,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabel {
    stream: &'static str,
}

/// The record store shipper's metrics (`[audit.postgres]`).
#[derive(Clone, Default)]
pub struct ShipMetrics {
    lag_records: Family<StreamLabel, Gauge>,
    lag_seconds: Gauge,
    shipped: Family<StreamLabel, Counter>,
    errors: Counter,
    up: Gauge,
    key_registered: Gauge,
    key_mismatch: Gauge,
}

impl ShipMetrics {
    /// After a run: the stream's records written but not in the store.
    pub fn lag(&self, stream: &'static str, records: u64) {
        self.lag_records
            .get_or_create(&StreamLabel { stream })
            .set(records.min(i64::MAX as u64) as i64);
    }

    /// Seconds since the oldest unshipped record was seen waiting (0: none waits).
    pub fn lag_seconds(&self, seconds: u64) {
        self.lag_seconds.set(seconds.min(i64::MAX as u64) as i64);
    }

    pub fn shipped(&self, stream: &'static str, records: u64) {
        self.shipped
            .get_or_create(&StreamLabel { stream })
            .inc_by(records);
    }

    /// What the store holds for this instance's key, as last looked up.
    pub(crate) fn key(&self, state: &crate::postgres::KeyState) {
        use crate::postgres::KeyState;
        self.key_registered
            .set(i64::from(*state == KeyState::Registered));
        self.key_mismatch
            .set(i64::from(matches!(state, KeyState::Other { .. })));
    }

    /// One run ended: reached the store (`true`) or failed.
    pub fn run(&self, ok: bool) {
        self.up.set(i64::from(ok));
        if !ok {
            self.errors.inc();
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExperimentRecordLabel {
    record: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FeedbackLabel {
    event: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: &'static str,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("concierge");
        let requests = Family::<CodeLabel, Counter>::default();
        registry.register(
            "http_requests",
            "Requests answered, by status code",
            requests.clone(),
        );
        // 0.5 ms … ~33 s
        let duration = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.0005, 2.0, 17,
        ));
        registry.register_with_unit(
            "http_request_duration",
            "Time from request head received to response body finished",
            prometheus_client::registry::Unit::Seconds,
            duration.clone(),
        );
        let upstream_errors = Family::<UpstreamErrorLabel, Counter>::default();
        registry.register(
            "upstream_errors",
            "Failed requests to the origin, by cause",
            upstream_errors.clone(),
        );
        let open_connections = Family::<ListenerLabel, Gauge>::default();
        registry.register(
            "open_connections",
            "Client connections currently open",
            open_connections.clone(),
        );
        let connections = Family::<ListenerLabel, Counter>::default();
        registry.register(
            "connections",
            "Client connections accepted",
            connections.clone(),
        );
        let tls_reloads = Family::<ReloadLabel, Counter>::default();
        registry.register(
            "tls_reloads",
            "Certificate reload attempts, by result",
            tls_reloads.clone(),
        );
        let access_log_dropped = Counter::default();
        registry.register(
            "access_log_dropped_lines",
            "Access-log lines dropped because the log's writer was 8 MiB behind (a blocked stderr)",
            access_log_dropped.clone(),
        );
        let tls_handshake_errors = Counter::default();
        registry.register(
            "tls_handshake_errors",
            "TLS handshakes that failed or timed out",
            tls_handshake_errors.clone(),
        );
        let aborted_responses = Counter::default();
        registry.register(
            "aborted_responses",
            "Responses whose body ended early (client gone or origin reset)",
            aborted_responses.clone(),
        );
        let client_errors = Family::<ClientErrorLabel, Counter>::default();
        registry.register(
            "client_errors",
            "Client connections that ended in an error the proxy answered itself or could not answer",
            client_errors.clone(),
        );
        let source_reloads = Family::<SourceReloadLabel, Counter>::default();
        registry.register(
            "source_reloads",
            "Reloads of data sources (firmographics: accounts, vendor files, databases), by result",
            source_reloads.clone(),
        );
        let open_tunnels = Gauge::default();
        registry.register(
            "open_tunnels",
            "Upgraded (WebSocket) connections currently open",
            open_tunnels.clone(),
        );
        let decisions = Family::<DecisionLabel, Counter>::default();
        registry.register(
            "consent_decisions",
            "Consent decisions made for page requests, by regime, highest permitted tier and whether the banner is due",
            decisions.clone(),
        );
        let company_lookups = Family::<ResultLabel, Counter>::default();
        registry.register(
            "company_lookups",
            "IP-to-company lookups run (only when the decision permits the firmographic tier), by result",
            company_lookups.clone(),
        );
        let consent_records = Family::<ResultLabel, Counter>::default();
        registry.register(
            "consent_records",
            "Choices posted to the consent endpoint, by result (recorded, refused, failed)",
            consent_records.clone(),
        );
        let consent_choices = Family::<ActionLabel, Counter>::default();
        registry.register(
            "consent_choices",
            "Consent choices recorded, by what the visitor chose (accept, reject, custom)",
            consent_choices.clone(),
        );
        let decision_records = Family::<ResultLabel, Counter>::default();
        registry.register(
            "decision_records",
            "Decision records for page requests, by result (accepted, or refused_* — then the page went out unpersonalized)",
            decision_records.clone(),
        );
        let experiment_records = Family::<ExperimentRecordLabel, Counter>::default();
        registry.register(
            "experiment_records",
            "Experiment records by record type (exposure, conversion) and result (accepted, or refused_*)",
            experiment_records.clone(),
        );
        let conversions_unrecorded = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "experiment_conversions_unrecorded",
            "Requests that met a goal but were not recorded as conversions, by reason (no_basis: the Decision did not permit the lookup; no_account; bot; excluded_network)",
            conversions_unrecorded.clone(),
        );
        let feedback_records = Family::<FeedbackLabel, Counter>::default();
        registry.register(
            "feedback_records",
            "Events posted by the feedback widget, by event (impression, feedback, comment, dismissal, unknown) and result (recorded, refused, failed)",
            feedback_records.clone(),
        );
        let rate_limited = Family::<EndpointLabel, Counter>::default();
        registry.register(
            "rate_limited",
            "Posts to the proxy's own endpoints refused with 429 (limits.visitor_posts_*), by endpoint",
            rate_limited.clone(),
        );
        let rewrites = Family::<ResultLabel, Counter>::default();
        registry.register(
            "rewrites",
            "Responses with a personalization plan, by outcome (rewritten, bailed_out, or skipped_* when the response could not be rewritten)",
            rewrites.clone(),
        );
        let origin_cache = Family::<ResultLabel, Counter>::default();
        registry.register(
            "origin_cache",
            "Requests the origin-response cache (cache.enabled) saw, by result (hit, miss, stored, bypass: not a request it may answer, e.g. with a cookie or Authorization)",
            origin_cache.clone(),
        );
        let origin_cache_bytes = Gauge::default();
        registry.register(
            "origin_cache_bytes",
            "Bytes of origin responses held by the origin-response cache (bounded by cache.max_bytes)",
            origin_cache_bytes.clone(),
        );
        let ship = ShipMetrics::default();
        registry.register(
            "audit_ship_lag_records",
            "Records written to the local log but not yet in the record store ([audit.postgres]), by stream",
            ship.lag_records.clone(),
        );
        registry.register(
            "audit_ship_lag_seconds",
            "How long records have been waiting to be shipped to the record store (0: none waits)",
            ship.lag_seconds.clone(),
        );
        registry.register(
            "audit_shipped_records",
            "Records shipped to the record store, by stream (a resend of rows it holds is not counted)",
            ship.shipped.clone(),
        );
        registry.register(
            "audit_ship_errors",
            "Shipping runs that failed (the database unreachable, refused, or a local file unreadable)",
            ship.errors.clone(),
        );
        registry.register(
            "audit_ship_key_registered",
            "1 when the record store holds this instance's checkpoint key (central verification can verify it), else 0",
            ship.key_registered.clone(),
        );
        registry.register(
            "audit_ship_key_mismatch",
            "1 when the record store holds another key for this instance: its records are shipped but will not verify",
            ship.key_mismatch.clone(),
        );
        registry.register(
            "audit_ship_up",
            "1 when the last shipping run reached the record store, 0 when it failed",
            ship.up.clone(),
        );
        registry.register(
            "build",
            "Build information",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        Arc::new(Metrics {
            registry,
            requests,
            duration,
            upstream_errors,
            open_connections,
            connections,
            tls_reloads,
            tls_handshake_errors,
            access_log_dropped,
            aborted_responses,
            client_errors,
            open_tunnels,
            source_reloads,
            decisions,
            company_lookups,
            consent_records,
            consent_choices,
            rewrites,
            origin_cache,
            origin_cache_bytes,
            decision_records,
            feedback_records,
            rate_limited,
            experiment_records,
            conversions_unrecorded,
            ship,
        })
    }

    pub fn record_request(&self, code: u16, seconds: f64, completed: bool) {
        self.requests.get_or_create(&CodeLabel { code }).inc();
        self.duration.observe(seconds);
        if !completed {
            self.aborted_responses.inc();
        }
    }

    pub fn upstream_error(&self, kind: UpstreamErrorKind) {
        self.upstream_errors
            .get_or_create(&UpstreamErrorLabel { kind })
            .inc();
    }

    /// The connection counters of one listener, looked up once when it starts.
    pub fn listener(&self, listener: &str) -> ListenerMetrics {
        let label = ListenerLabel {
            listener: listener.to_string(),
        };
        ListenerMetrics {
            accepted: self.connections.get_or_create(&label).clone(),
            open: self.open_connections.get_or_create(&label).clone(),
        }
    }

    pub fn client_error(&self, kind: ClientErrorKind) {
        self.client_errors
            .get_or_create(&ClientErrorLabel { kind })
            .inc();
    }

    /// Count an upgraded connection while the guard lives.
    pub fn tunnel_opened(&self) -> ConnectionGuard {
        self.open_tunnels.inc();
        ConnectionGuard {
            gauge: self.open_tunnels.clone(),
        }
    }

    pub fn tls_reload(&self, result: ReloadResult) {
        self.tls_reloads
            .get_or_create(&ReloadLabel { result })
            .inc();
    }

    pub fn source_reload(&self, source: &str, result: ReloadResult) {
        self.source_reloads
            .get_or_create(&SourceReloadLabel {
                source: source.to_string(),
                result,
            })
            .inc();
    }

    pub fn decision(&self, regime: &'static str, highest_tier: &'static str, banner: bool) {
        self.decisions
            .get_or_create(&DecisionLabel {
                regime,
                highest_tier,
                banner,
            })
            .inc();
    }

    pub fn company_lookup(&self, result: &'static str) {
        self.company_lookups
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    pub fn consent_record(&self, result: &'static str) {
        self.consent_records
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// A consent choice recorded: `accept`, `reject` or `custom`.
    pub fn consent_choice(&self, action: &'static str) {
        self.consent_choices
            .get_or_create(&ActionLabel { action })
            .inc();
    }

    pub fn decision_record(&self, result: &'static str) {
        self.decision_records
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    pub fn experiment_record(&self, kind: &'static str, result: &'static str) {
        self.experiment_records
            .get_or_create(&ExperimentRecordLabel {
                record: kind,
                result,
            })
            .inc();
    }

    pub fn conversion_unrecorded(&self, reason: &'static str) {
        self.conversions_unrecorded
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub fn feedback_record(&self, event: &'static str, result: &'static str) {
        self.feedback_records
            .get_or_create(&FeedbackLabel { event, result })
            .inc();
    }

    pub fn rate_limited(&self, endpoint: &'static str) {
        self.rate_limited
            .get_or_create(&EndpointLabel { endpoint })
            .inc();
    }

    /// A request the origin-response cache saw: `hit`, `miss`, `stored` or `bypass`.
    pub fn origin_cache(&self, result: &'static str) {
        self.origin_cache
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// The bytes the origin-response cache holds now.
    pub fn origin_cache_bytes(&self, bytes: usize) {
        self.origin_cache_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    pub fn rewrite(&self, result: &'static str) {
        self.rewrites.get_or_create(&ResultLabel { result }).inc();
    }

    /// The counter the access log's writer counts dropped lines in.
    /// Handles for the record store's shipper.
    pub fn ship(&self) -> ShipMetrics {
        self.ship.clone()
    }

    pub fn access_log_dropped(&self) -> Counter {
        self.access_log_dropped.clone()
    }

    pub fn tls_handshake_error(&self) {
        self.tls_handshake_errors.inc();
    }

    /// Number of reloads with `result` so far (for status output and tests).
    pub fn tls_reload_count(&self, result: ReloadResult) -> u64 {
        self.tls_reloads
            .get_or_create(&ReloadLabel { result })
            .get()
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// One listener's connection counters.
#[derive(Clone)]
pub struct ListenerMetrics {
    accepted: Counter,
    open: Gauge,
}

impl ListenerMetrics {
    /// Count a new connection; the returned guard keeps it in the open-connections gauge.
    pub fn connection_opened(&self) -> ConnectionGuard {
        self.accepted.inc();
        self.open.inc();
        ConnectionGuard {
            gauge: self.open.clone(),
        }
    }
}

/// Decrements a gauge when the connection it counts ends.
pub struct ConnectionGuard {
    gauge: Gauge,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_contains_recorded_values() {
        let m = Metrics::new();
        m.record_request(200, 0.01, true);
        m.record_request(502, 0.02, false);
        m.upstream_error(UpstreamErrorKind::connect);
        let g = m.listener("127.0.0.1:8080").connection_opened();
        m.tls_reload(ReloadResult::failure);
        let text = m.encode();
        assert!(
            text.contains("concierge_http_requests_total{code=\"200\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("concierge_upstream_errors_total{kind=\"connect\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("concierge_open_connections{listener=\"127.0.0.1:8080\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("concierge_tls_reloads_total{result=\"failure\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("concierge_http_request_duration_seconds_count 2"),
            "{text}"
        );
        drop(g);
        assert!(m
            .encode()
            .contains("concierge_open_connections{listener=\"127.0.0.1:8080\"} 0"));
    }
}
