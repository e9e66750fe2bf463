//! Records a compliance reviewer relies on, and the tamper-evident log they are written to.
//!
//! - [`chain`]: line format, hash chain, segments; [`keys`]: Ed25519 keys and signed checkpoints;
//!   [`writer`]: the writer thread (bounded queue, group commit, fsync policy, checkpoints, rotation,
//!   retention, torn-tail recovery); [`verify`]: what `concierge audit verify` checks; [`query`]: export and
//!   stats.
//! - Records: proof of consent ([`ConsentRecord`], from the consent endpoint) and one [`DecisionRecord`] per
//!   page request where personalization was considered (a company lookup ran or a plan had changes).
//!
//! Invariant: a producer acts on a record (sets the consent cookie, personalizes a page) only after the writer
//! accepted it — no record, no effect.

pub(crate) mod chain;
pub(crate) mod gate;
pub mod keys;
pub mod query;
pub(crate) mod settings;
mod stats_line;
pub(crate) mod tally;
pub(crate) mod verify;
pub mod writer;

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::consent::policy::Jurisdiction;

/// A visitor's choice per tier, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Choices {
    pub firmographic: bool,
    pub personal: bool,
}

/// Proof of consent (GDPR Art. 7(1)): who (a consent id, also in the visitor's cookie — no IP), when, what
/// they chose, which banner text they saw, on which page, under which jurisdiction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsentRecord {
    /// RFC 3339 UTC with milliseconds.
    pub time: String,
    pub consent_id: String,
    /// `accept`, `reject` or `custom`: which control the visitor used.
    pub action: &'static str,
    pub choices: Choices,
    pub banner_version: String,
    /// The page path the choice was made on (no query string).
    pub page: String,
    pub jurisdiction: Jurisdiction,
    /// A GPC signal was present when the choice was made (it still withdraws consent whatever the choice).
    pub gpc: bool,
    pub request_id: String,
    /// The language of the banner or choices page the choice was made on (one of `consent.texts`'s); absent in
    /// records written before Concierge had languages, and when the form did not say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

/// What the `audit` stream holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    Consent(ConsentRecord),
    Decision(Box<DecisionRecord>),
    /// Per-interval counts of page decisions ([`tally`]).
    Counts(tally::CountsRecord),
}

/// What was decided for one page request, and what it was based on. No raw IP, no user agent, no free text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionRecord {
    pub time: String,
    pub request_id: String,
    /// The client pseudonymized (`audit.client`); absent with `omit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// Path only, no query string.
    pub page: String,
    pub jurisdiction: Jurisdiction,
    pub signals: SignalsSummary,
    /// The consent id of the first-party cookie the Decision relied on (one this proxy signed): joins the
    /// decision to its proof-of-consent record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent_id: Option<String>,
    /// Tiers the Decision permitted.
    pub permitted: Vec<&'static str>,
    pub reasons: Vec<String>,
    pub banner: bool,
    /// `not_run` (the Decision did not permit it), `matched` or `no_company`.
    pub lookup: &'static str,
    /// The matched company's domain (company data, not personal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    /// Rules whose changes were applied (empty when none were).
    pub rules: Vec<String>,
    pub rules_version: String,
    /// `personalized` (rewritten with the rules' changes), `banner` (rewritten only to add the consent banner),
    /// `not_personalized`, or `explained` (the "why am I seeing this" page, which shows the lookup's result to
    /// the visitor; `page` is then that page's path).
    pub outcome: &'static str,
    /// The experiments this page took part in and the visitor's arm in each (`control`: the governed rules were
    /// held out on purpose).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub experiments: Vec<ExperimentArm>,
}

/// One experiment's arm, as a decision record names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExperimentArm {
    pub experiment: String,
    pub arm: crate::experiments::Arm,
}

/// The consent signals a request carried, in summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SignalsSummary {
    pub gpc: bool,
    pub dnt: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcf: Option<TcfSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpp: Option<GppSummary>,
    /// The US Privacy string's opt-out of sale (`Y`/`N`/`-`), or `invalid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_party: Option<FirstPartySummary>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TcfSummary {
    pub valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmp: Option<u16>,
    pub purposes: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GppSummary {
    pub valid: bool,
    pub sections: Vec<u16>,
    /// Names of the sections that say the visitor opted out.
    pub opt_outs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FirstPartySummary {
    pub valid: bool,
    /// `signed`, `previous-key`, `unsigned`, `unknown-key` or `bad-tag` (only a signed cookie grants).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integrity: Option<crate::consent::first_party::Integrity>,
    pub firmographic: bool,
    pub personal: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub banner_version: Option<String>,
}

impl SignalsSummary {
    pub fn of(s: &crate::consent::signals::Signals) -> SignalsSummary {
        SignalsSummary {
            gpc: s.gpc,
            dnt: s.dnt,
            tcf: s.tcf.as_ref().map(|t| match t {
                Ok(t) => TcfSummary {
                    valid: true,
                    cmp: Some(t.cmp_id),
                    purposes: t.purpose_consents.iter().copied().collect(),
                },
                Err(_) => TcfSummary {
                    valid: false,
                    cmp: None,
                    purposes: vec![],
                },
            }),
            gpp: s.gpp.as_ref().map(|g| match g {
                Ok(g) => GppSummary {
                    valid: true,
                    sections: g.section_ids.clone(),
                    opt_outs: g.opt_outs().map(str::to_string).collect(),
                },
                Err(_) => GppSummary {
                    valid: false,
                    sections: vec![],
                    opt_outs: vec![],
                },
            }),
            usp: s.usp.as_ref().map(|u| match u {
                Ok(u) => if u.opted_out() {
                    "opted_out"
                } else {
                    "not_opted_out"
                }
                .to_string(),
                Err(_) => "invalid".into(),
            }),
            first_party: s.first_party.as_ref().map(|f| match f {
                Ok(f) => FirstPartySummary {
                    valid: true,
                    integrity: Some(f.integrity),
                    firmographic: f.firmographic,
                    personal: f.personal,
                    banner_version: Some(f.banner_version.clone()),
                },
                Err(_) => FirstPartySummary {
                    valid: false,
                    integrity: None,
                    firmographic: false,
                    personal: false,
                    banner_version: None,
                },
            }),
        }
    }
}

/// How the client appears in decision records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientMode {
    /// `h:` + 16 hex digits of HMAC-SHA-256 under a random key kept only in memory and replaced every
    /// `audit.client_key_rotation`: the same client links within one key period, never across, and never
    /// back to an address.
    KeyedHash,
    /// The network: IPv4 /24, IPv6 /48.
    Truncate,
    Omit,
}

/// Pseudonymizes client addresses for decision records.
pub struct Pseudonymizer {
    mode: ClientMode,
    rotation: Duration,
    key: Mutex<Option<KeyedState>>,
}

/// The current key, when it was made, and the pseudonyms it gave (a repeat visitor costs no HMAC). The cache
/// goes with the key, so it never outlives a rotation, and holds at most [`PSEUDONYM_CACHE`] addresses.
struct KeyedState {
    made: Instant,
    key: ring::hmac::Key,
    seen: std::collections::HashMap<IpAddr, String>,
}

/// The most addresses whose pseudonyms are kept (then the cache starts over).
const PSEUDONYM_CACHE: usize = 16 * 1024;

impl Pseudonymizer {
    pub fn new(mode: ClientMode, rotation: Duration) -> Pseudonymizer {
        Pseudonymizer {
            mode,
            rotation,
            key: Mutex::new(None),
        }
    }

    pub fn client(&self, ip: IpAddr) -> Option<String> {
        match self.mode {
            ClientMode::Omit => None,
            ClientMode::Truncate => Some(match ip {
                IpAddr::V4(v4) => {
                    let o = v4.octets();
                    format!("{}.{}.{}.0/24", o[0], o[1], o[2])
                }
                IpAddr::V6(v6) => {
                    let s = v6.segments();
                    format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
                }
            }),
            ClientMode::KeyedHash => {
                let mut guard = self.key.lock().unwrap_or_else(|p| p.into_inner());
                let fresh = guard
                    .as_ref()
                    .is_some_and(|k| k.made.elapsed() < self.rotation);
                if !fresh {
                    *guard = Some(KeyedState {
                        made: Instant::now(),
                        key: new_key()?,
                        seen: Default::default(),
                    });
                }
                let state = guard.as_mut()?;
                if let Some(p) = state.seen.get(&ip) {
                    return Some(p.clone());
                }
                let bytes = match ip {
                    IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
                    IpAddr::V6(v6) => v6.octets(),
                };
                let tag = ring::hmac::sign(&state.key, &bytes);
                let pseudonym = format!("h:{}", chain::hex(&tag.as_ref()[..8]));
                if state.seen.len() >= PSEUDONYM_CACHE {
                    state.seen.clear();
                }
                state.seen.insert(ip, pseudonym.clone());
                Some(pseudonym)
            }
        }
    }
}

/// A fresh random key; `None` if the OS RNG fails (the client is then left out rather than hashed under a
/// guessable key).
fn new_key() -> Option<ring::hmac::Key> {
    let rng = ring::rand::SystemRandom::new();
    ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng).ok()
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit.dir: cannot use {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("audit.signing_key: {0}")]
    Key(#[from] keys::KeyError),
    #[error("audit.dir: {0}")]
    Open(#[from] writer::OpenError),
    #[error("audit.instance: {0}")]
    Instance(String),
}

/// Stream names.
pub const AUDIT_STREAM: &str = "audit";
pub const FEEDBACK_STREAM: &str = "feedback";

/// The running audit log: its writers and the client pseudonymizer.
pub struct Audit {
    /// The `audit` stream's gate (decision, consent, counts, exposure and conversion records).
    pub records: gate::Gate,
    /// The `feedback` stream's gate.
    pub feedback: gate::Gate,
    pub wait_durable: bool,
    pub pseudonymizer: Pseudonymizer,
    /// Page decisions of the current interval, written as a `counts` record every checkpoint interval.
    pub tally: tally::Tally,
    /// `audit.record_refusals`: a decision record also for pages where the Decision withheld the firmographic
    /// tier and nothing else would be recorded.
    pub record_refusals: bool,
    /// With `[audit.postgres]`: what the shipper needs of the writers.
    pub shipping: Option<Shipping>,
}

/// What the record store's shipper reads of this instance's log: its id and key, and per stream the writer's
/// progress and the retention guard the shipper keeps current.
pub struct Shipping {
    pub instance: String,
    pub public_key: keys::PublicKey,
    pub streams: Vec<ShippedStream>,
}

pub struct ShippedStream {
    pub name: &'static str,
    /// `<audit.dir>/<name>`.
    pub dir: std::path::PathBuf,
    /// `borrow().0`: every seq below it is in the file.
    pub written: tokio::sync::watch::Receiver<(u64, u64, bool)>,
    /// The first seq the store does not hold (retention keeps it and everything after).
    pub keep_from: Arc<std::sync::atomic::AtomicU64>,
}

/// Without `audit.signing_key`: the key at `<dir>/signing.key`, created on first start (with
/// `signing.key.pub`). Convenient, but a key next to the log it protects lets whoever can rewrite the log re-sign
/// it: production setups keep the key elsewhere and give reviewers the public key through another channel.
fn default_key(dir: &std::path::Path) -> Result<keys::SigningKey, AuditError> {
    let path = dir.join("signing.key");
    if path.exists() {
        tracing::warn!(key = %path.display(), "audit checkpoints are signed with a key stored next to the log; set audit.signing_key to a key kept elsewhere");
        return Ok(keys::SigningKey::load(&path)?);
    }
    std::fs::create_dir_all(dir).map_err(|source| AuditError::Dir {
        path: dir.display().to_string(),
        source,
    })?;
    let key = keys::create(&path)?;
    tracing::warn!(
        key = %path.display(),
        public = %key.public().encode(),
        "audit.signing_key is not set: created a checkpoint signing key next to the log; for tamper evidence keep the key elsewhere (concierge audit keygen) and give reviewers the public key separately"
    );
    Ok(key)
}

pub use gate::DURABLE_WAIT;
pub use settings::AuditSettings;

/// Where records go (`audit.sink`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    /// The hash-chained segment files under `audit.dir`.
    File,
    /// Nothing is kept: only for benchmarks measuring the proxy without its records.
    DiscardForBenchmarks,
}

/// The file in the audit folder that keeps a generated instance id.
pub const INSTANCE_FILE: &str = "instance";

/// Whether `id` can name an instance: 1 to 64 ASCII letters, digits, `.`, `_` or `-`.
pub fn valid_instance(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// This instance's id: the configured one, else the one kept in `dir/instance`, else a new one (`i-` and 16 hex
/// digits) written there — stable across restarts, distinct between instances.
pub fn instance_id(dir: &Path, configured: Option<&str>) -> Result<String, AuditError> {
    if let Some(id) = configured {
        return Ok(id.to_string());
    }
    let path = dir.join(INSTANCE_FILE);
    let io = |e: std::io::Error| AuditError::Instance(format!("{}: {e}", path.display()));
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            if valid_instance(id) {
                Ok(id.to_string())
            } else {
                Err(AuditError::Instance(format!(
                    "{}: `{id}` is not an instance id (1 to 64 letters, digits, '.', '_' or '-')",
                    path.display()
                )))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut raw = [0u8; 8];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
                .map_err(|_| AuditError::Instance("no randomness for an instance id".into()))?;
            let id = format!(
                "i-{}",
                raw.iter().map(|b| format!("{b:02x}")).collect::<String>()
            );
            std::fs::create_dir_all(dir).map_err(io)?;
            std::fs::write(&path, format!("{id}\n")).map_err(io)?;
            Ok(id)
        }
        Err(e) => Err(io(e)),
    }
}

impl Audit {
    pub fn open(
        settings: &crate::config::AuditSettings,
        metrics: Option<Arc<crate::metrics::Metrics>>,
    ) -> Result<Arc<Audit>, AuditError> {
        let mut shipping = None;
        let (records, feedback): (Arc<dyn gate::Sink>, Arc<dyn gate::Sink>) = match settings.sink {
            SinkKind::File => {
                let key = Arc::new(match &settings.signing_key {
                    Some(path) => keys::SigningKey::load(path)?,
                    None => default_key(&settings.dir)?,
                });
                let instance = instance_id(&settings.dir, settings.instance.as_deref())?;
                tracing::info!(instance = %instance, "audit instance");
                let guard = || {
                    settings
                        .postgres
                        .is_some()
                        .then(|| Arc::new(std::sync::atomic::AtomicU64::new(0)))
                };
                let (records_guard, feedback_guard) = (guard(), guard());
                let options =
                    |stream: &str, keep_from: &Option<Arc<std::sync::atomic::AtomicU64>>| {
                        writer::Options {
                            instance: Some(instance.clone()),
                            keep_from: keep_from.clone(),
                            ..settings.writer_options(stream)
                        }
                    };
                // Each writer thread ends once every handle is dropped, after writing what is queued; nothing
                // joins it.
                let (records, _) = writer::Writer::open(
                    &settings.dir,
                    key.clone(),
                    options(AUDIT_STREAM, &records_guard),
                )?;
                let (feedback, _) = writer::Writer::open(
                    &settings.dir,
                    key.clone(),
                    options(FEEDBACK_STREAM, &feedback_guard),
                )?;
                if let (Some(r), Some(f)) = (records_guard, feedback_guard) {
                    let stream =
                        |name: &'static str, w: &writer::Writer, keep_from| ShippedStream {
                            name,
                            dir: settings.dir.join(name),
                            written: w.progress(),
                            keep_from,
                        };
                    shipping = Some(Shipping {
                        instance: instance.clone(),
                        public_key: key.public(),
                        streams: vec![
                            stream(AUDIT_STREAM, &records, r),
                            stream(FEEDBACK_STREAM, &feedback, f),
                        ],
                    });
                }
                (Arc::new(records), Arc::new(feedback))
            }
            SinkKind::DiscardForBenchmarks => {
                tracing::error!("audit.sink = \"discard-for-benchmarks\": NO RECORD IS KEPT — personalization without an audit log; for benchmarks only");
                (Arc::new(gate::DiscardSink), Arc::new(gate::DiscardSink))
            }
        };
        Ok(Arc::new(Audit {
            records: gate::Gate::new(records, metrics.clone()),
            feedback: gate::Gate::new(feedback, metrics),
            wait_durable: settings.wait_durable,
            pseudonymizer: Pseudonymizer::new(settings.client, settings.client_key_rotation),
            tally: tally::Tally::default(),
            record_refusals: settings.record_refusals,
            shipping,
        }))
    }

    /// Queue the counts of the interval that just ended as a `counts` record (put back if it cannot be queued,
    /// to go with the next interval's).
    pub fn write_counts(&self) {
        if let Some(counts) = self.tally.take() {
            let record = Record::Counts(counts);
            if let Ok(t) = self.records.submit(gate::Kind::Other, &record, false) {
                t.accepted();
            } else {
                let Record::Counts(counts) = record else {
                    return;
                };
                self.tally.restore(counts);
            }
        }
    }

    /// Write the last counts, everything queued and a checkpoint on every stream (blocking; at shutdown).
    pub fn flush(&self) {
        self.write_counts();
        self.records.flush();
        self.feedback.flush();
    }
}

#[cfg(test)]
mod tests;
