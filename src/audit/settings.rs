//! What the operator configured for the audit log (`[audit]`, validated by `config`).

use std::path::PathBuf;
use std::time::Duration;

/// The audit log: where, how durable, how the client is pseudonymized.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    pub dir: PathBuf,
    /// Ed25519 private key (PEM) signing checkpoints; required to serve.
    pub signing_key: Option<PathBuf>,
    pub fsync: crate::audit::writer::Fsync,
    /// A personalized response waits for its record to be durable (else: for the writer to accept it).
    pub wait_durable: bool,
    pub queue: usize,
    pub checkpoint_records: u64,
    pub checkpoint_interval: Duration,
    pub commit_window: Duration,
    pub segment_bytes: u64,
    pub segment_age: Duration,
    pub retention: Duration,
    pub client: crate::audit::ClientMode,
    pub client_key_rotation: Duration,
    /// A decision record also for every page where the Decision withheld the firmographic tier.
    pub record_refusals: bool,
    /// Where records go: the file writer (always, in production), or nowhere (benchmarks).
    pub sink: crate::audit::SinkKind,
    /// `audit.instance`: this instance's id, named in its checkpoints. Unset: the id kept in the audit folder
    /// (`instance`), made once ([`crate::audit::instance_id`]).
    pub instance: Option<String>,
    /// `[audit.postgres]`: the central record store, if configured.
    pub postgres: Option<crate::postgres::PostgresSettings>,
}

impl AuditSettings {
    /// Writer options for one stream.
    pub fn writer_options(&self, stream: &str) -> crate::audit::writer::Options {
        crate::audit::writer::Options {
            instance: self.instance.clone(),
            queue: self.queue,
            fsync: self.fsync,
            checkpoint_records: self.checkpoint_records,
            checkpoint_interval: self.checkpoint_interval,
            commit_window: self.commit_window,
            segment_bytes: self.segment_bytes,
            segment_age: self.segment_age,
            retention: self.retention,
            ..crate::audit::writer::Options::new(stream)
        }
    }
}
