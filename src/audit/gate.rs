//! One gate for every record: decisions, consent choices, feedback, counts, experiment exposures and conversions.
//!
//! A producer hands the gate a record and says whether it will act on it only once it is on disk; the gate
//! serializes it (into a reused per-thread buffer), hands the bytes to the stream's [`Sink`], and counts what
//! happened. Acting on a record (personalizing a page, setting a consent cookie, answering a feedback post)
//! waits on the [`Ticket`] the gate returns, bounded by [`DURABLE_WAIT`]: "no record, no effect" is decided
//! here once, for every producer.
//!
//! Sinks: the file writer ([`super::writer::Writer`], the hash-chained segments); [`DiscardSink`] for
//! benchmarks that measure the proxy without its records (`audit.sink = "discard-for-benchmarks"`, never for
//! production); a database sink will be one more implementation, not one more path.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::writer::{Ack, Refused, Writer};
use crate::metrics::Metrics;

/// How long an effect waits for its record to be on disk before it is given up (the page goes out unchanged,
/// the choice is refused with a 503).
pub const DURABLE_WAIT: Duration = Duration::from_secs(5);

/// A future a sink returns for an ack.
pub type Written<'a> = Pin<Box<dyn Future<Output = Result<u64, Refused>> + Send + 'a>>;

/// Where a stream's records go.
pub trait Sink: Send + Sync {
    /// Queue one serialized record (a JSON object on one line); `durable`: its ack resolves only once it is
    /// on disk. Never blocks for long.
    fn submit(&self, body: &[u8], durable: bool) -> Result<Ack, Refused>;
    /// Resolves when the record behind `ack` is written (durable ones: fsynced).
    fn written(&self, ack: Ack) -> Written<'_>;
    /// Write everything queued, and seal it (blocking; at shutdown).
    fn flush(&self);
    /// Whether the sink keeps records at all (the gate does not even serialize for one that does not).
    fn keeps(&self) -> bool {
        true
    }
}

impl Sink for Writer {
    fn submit(&self, body: &[u8], durable: bool) -> Result<Ack, Refused> {
        self.submit_bytes(body, durable)
    }

    fn written(&self, ack: Ack) -> Written<'_> {
        Box::pin(Writer::written(self, ack))
    }

    fn flush(&self) {
        Writer::flush(self);
    }
}

/// Accepts every record at once and keeps none: only for measuring what the records cost the proxy.
pub struct DiscardSink;

impl Sink for DiscardSink {
    fn submit(&self, _body: &[u8], durable: bool) -> Result<Ack, Refused> {
        Ok(Ack { seq: 0, durable })
    }

    fn written(&self, ack: Ack) -> Written<'_> {
        Box::pin(std::future::ready(Ok(ack.seq)))
    }

    fn flush(&self) {}

    fn keeps(&self) -> bool {
        false
    }
}

/// What kind of record goes through the gate (for its metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A page's decision record: counted in `concierge_decision_records_total`.
    Decision,
    /// An experiment's exposure record: counted in `concierge_experiment_records_total{record="exposure"}`.
    Exposure,
    /// An experiment's conversion record: counted in `concierge_experiment_records_total{record="conversion"}`.
    Conversion,
    /// Consent, feedback, counts: counted by their endpoints.
    Other,
}

thread_local! {
    /// Per-thread serialization buffer: a record is serialized here, then copied into the sink's queue.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The gate of one stream.
#[derive(Clone)]
pub struct Gate {
    sink: Arc<dyn Sink>,
    metrics: Option<Arc<Metrics>>,
}

/// A record the gate accepted; wait on it before acting on the record.
pub struct Ticket {
    gate: Gate,
    ack: Ack,
    kind: Kind,
}

impl Gate {
    pub fn new(sink: Arc<dyn Sink>, metrics: Option<Arc<Metrics>>) -> Gate {
        Gate { sink, metrics }
    }

    fn count(&self, kind: Kind, result: &'static str) {
        match (kind, &self.metrics) {
            (Kind::Decision, Some(m)) => m.decision_record(result),
            (Kind::Exposure, Some(m)) => m.experiment_record("exposure", result),
            (Kind::Conversion, Some(m)) => m.experiment_record("conversion", result),
            _ => {}
        }
    }

    /// Queue `record`; `durable`: the ticket resolves once it is on disk. A refusal is counted and returned:
    /// the caller must not act on the record.
    pub fn submit<T: Serialize>(
        &self,
        kind: Kind,
        record: &T,
        durable: bool,
    ) -> Result<Ticket, Refused> {
        if !self.sink.keeps() {
            return Ok(Ticket {
                gate: self.clone(),
                ack: Ack { seq: 0, durable },
                kind,
            });
        }
        let submitted = SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut buf) => {
                buf.clear();
                serde_json::to_writer(&mut *buf, record).map_err(|_| Refused::TooLarge)?;
                let result = self.sink.submit(&buf, durable);
                if buf.capacity() > super::chain::MAX_LINE {
                    *buf = Vec::new();
                }
                result
            }
            // Only if serializing a record submitted another one on this thread; no such record exists.
            Err(_) => self.sink.submit(
                &serde_json::to_vec(record).map_err(|_| Refused::TooLarge)?,
                durable,
            ),
        });
        match submitted {
            Ok(ack) => Ok(Ticket {
                gate: self.clone(),
                ack,
                kind,
            }),
            Err(e) => {
                self.count(kind, e.label());
                Err(e)
            }
        }
    }

    /// Queue `record` durable and wait until it is on disk, at most [`DURABLE_WAIT`].
    pub async fn durable<T: Serialize>(&self, kind: Kind, record: &T) -> Result<u64, Refused> {
        self.submit(kind, record, true)?.on_disk().await
    }

    /// Write everything queued and seal it (blocking; at shutdown).
    pub fn flush(&self) {
        self.sink.flush();
    }
}

impl Ticket {
    /// The record will not be waited for: count it as accepted now.
    pub fn accepted(self) {
        self.gate.count(self.kind, "accepted");
    }

    /// Resolves once the record is on disk (`Ok`), or when it could not be made so within [`DURABLE_WAIT`]
    /// (`Err(Timeout)`) or the writer stopped; counted either way.
    pub async fn on_disk(self) -> Result<u64, Refused> {
        let result =
            match tokio::time::timeout(DURABLE_WAIT, self.gate.sink.written(self.ack)).await {
                Ok(r) => r,
                Err(_) => Err(Refused::Timeout),
            };
        self.gate.count(
            self.kind,
            match &result {
                Ok(_) => "accepted",
                Err(e) => e.label(),
            },
        );
        result
    }
}
