//! The PostgreSQL record store (`[audit.postgres]`): connecting (password from a file or the environment, TLS
//! with the system roots or a CA file) and the versioned schema (`migrate`). Shipping records and reading
//! them back build on this.
//!
//! Invariants:
//! - The schema is applied in one transaction under an advisory lock, so instances starting together apply it
//!   once; a database migrated by a newer Concierge is refused, never written with an older schema's idea of it.
//! - Rows are append-only (triggers refuse UPDATE, DELETE and TRUNCATE); retention drops whole partitions.
//! - The password never appears in an error, a log line or the URL shown.

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod read;
pub mod ship;
pub mod shipper;
mod tls;
pub mod verify;

/// `[audit.postgres]`, validated.
#[derive(Debug, Clone)]
pub struct PostgresSettings {
    /// `postgres://user@host:port/db` (a password in it is accepted but better kept in `password_file`).
    pub url: String,
    pub password_file: Option<PathBuf>,
    /// PEM roots for the server's certificate (else the system's).
    pub ca_file: Option<PathBuf>,
    /// The proxy's shipper: how often it looks for new records (`ship_interval`).
    pub ship_interval: std::time::Duration,
    /// Records per transaction (`ship_batch`).
    pub ship_batch: usize,
    /// Connections a catch-up inserts over at once, a transaction each (`ship_connections`).
    pub ship_connections: usize,
    /// Records older than this still waiting to be shipped make `/healthz/records` answer 503 (`max_lag`).
    pub max_lag: std::time::Duration,
    /// The proxy registers its own checkpoint key at first contact (`register`); off: an operator registers
    /// it (`concierge audit register`) and an unregistered instance's records are still shipped.
    pub register: bool,
}

impl PostgresSettings {
    /// Settings for `url` with the defaults of everything else (the CLI's `--postgres`).
    pub fn for_url(url: &str, password_file: Option<PathBuf>, ca_file: Option<PathBuf>) -> Self {
        PostgresSettings {
            url: url.to_string(),
            password_file,
            ca_file,
            ship_interval: std::time::Duration::from_secs(1),
            ship_batch: 1000,
            ship_connections: 2,
            max_lag: std::time::Duration::from_secs(60),
            register: true,
        }
    }
}

/// The environment variable a password may come from (after `password_file`).
pub const PASSWORD_ENV: &str = "CONCIERGE_POSTGRES_PASSWORD";

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("audit.postgres.url: {0}")]
    Url(String),
    #[error("audit.postgres.password_file {path}: {reason}")]
    Password { path: String, reason: String },
    #[error("audit.postgres.ca_file {path}: {reason}")]
    Ca { path: String, reason: String },
    #[error("PostgreSQL at {at}: {reason}")]
    Db { at: String, reason: String },
    #[error("instance `{instance}` is registered with another key ({have}, since {at}); it is not replaced")]
    OtherKey {
        instance: String,
        have: String,
        at: String,
    },
    #[error("the database's schema is version {found}, newer than this Concierge knows ({known}); upgrade Concierge")]
    Newer { found: i32, known: i32 },
}

/// The schema's versions, in order: (version, what it does, SQL).
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "records, checkpoints and registered instances; append-only; monthly partitions",
        include_str!("0001_records.sql"),
    ),
    (
        2,
        "records without their JSONB copy (line::jsonb for ad-hoc SQL) and the experiment index",
        include_str!("0002_no_body.sql"),
    ),
    (
        3,
        "an account's records by the index (the company with ASCII case folded, as the readers compare it)",
        include_str!("0003_company_ascii.sql"),
    ),
    (
        4,
        "the experiment report's fields beside exposures and conversions, in a covering index",
        include_str!("0004_facts.sql"),
    ),
];

/// Where a URL points, without its password: for messages.
pub fn shown(url: &str) -> String {
    match url.parse::<tokio_postgres::Config>() {
        Ok(c) => {
            let host = c
                .get_hosts()
                .first()
                .map(|h| match h {
                    tokio_postgres::config::Host::Tcp(h) => h.clone(),
                    tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
                })
                .unwrap_or_default();
            let port = c.get_ports().first().copied().unwrap_or(5432);
            format!(
                "{}@{host}:{port}/{}",
                c.get_user().unwrap_or("?"),
                c.get_dbname().unwrap_or("?")
            )
        }
        Err(_) => "(an unreadable URL)".into(),
    }
}

fn db(url: &str) -> impl Fn(tokio_postgres::Error) -> PgError + '_ {
    move |e| PgError::Db {
        at: shown(url),
        reason: match e.as_db_error() {
            Some(d) => d.message().to_string(),
            None => e.to_string(),
        },
    }
}

impl PostgresSettings {
    fn config(&self) -> Result<tokio_postgres::Config, PgError> {
        let mut config: tokio_postgres::Config = self
            .url
            .parse()
            .map_err(|e: tokio_postgres::Error| PgError::Url(e.to_string()))?;
        if let Some(path) = &self.password_file {
            let fail = |reason: String| PgError::Password {
                path: path.display().to_string(),
                reason,
            };
            let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
            let password = text.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                return Err(fail("the file is empty".into()));
            }
            config.password(password);
        } else if let Ok(p) = std::env::var(PASSWORD_ENV) {
            config.password(p);
        }
        config.application_name("concierge");
        config.connect_timeout(std::time::Duration::from_secs(10));
        Ok(config)
    }

    /// Connect; the connection runs on a task of its own until the client is dropped.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, PgError> {
        let config = self.config()?;
        let tls = tls::MakeRustls::new(self.ca_file.as_deref())?;
        let (client, connection) = config.connect(tls).await.map_err(db(&self.url))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "PostgreSQL connection ended");
            }
        });
        Ok(client)
    }
}

/// What `migrate` did.
#[derive(Debug, PartialEq, Eq)]
pub struct Migrated {
    pub from: i32,
    pub to: i32,
}

/// Bring the schema to the newest version, in one transaction (under an advisory lock).
pub async fn migrate(client: &mut tokio_postgres::Client, url: &str) -> Result<Migrated, PgError> {
    let e = db(url);
    let tx = client.transaction().await.map_err(&e)?;
    // Any fixed number: every Concierge migrating this database waits for the one before it.
    tx.execute("SELECT pg_advisory_xact_lock(7268156142359130)", &[])
        .await
        .map_err(&e)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS concierge_schema (
             version    integer PRIMARY KEY,
             what       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(&e)?;
    let row = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM concierge_schema",
            &[],
        )
        .await
        .map_err(&e)?;
    let from: i32 = row.get(0);
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if from > known {
        return Err(PgError::Newer { found: from, known });
    }
    for (version, what, sql) in MIGRATIONS.iter().filter(|m| m.0 > from) {
        tx.batch_execute(sql).await.map_err(&e)?;
        tx.execute(
            "INSERT INTO concierge_schema (version, what) VALUES ($1, $2)",
            &[version, what],
        )
        .await
        .map_err(&e)?;
    }
    tx.commit().await.map_err(&e)?;
    Ok(Migrated { from, to: known })
}

/// How registering an instance's key went.
#[derive(Debug, PartialEq, Eq)]
pub enum Registered {
    New,
    /// Already registered with this key.
    Same,
}

/// Register `instance`'s checkpoint key, the one central verification will trust for its chains. A different
/// key already registered for it is refused: a key is not replaced by whoever can reach the database.
pub async fn register(
    client: &tokio_postgres::Client,
    url: &str,
    instance: &str,
    key: &crate::audit::keys::PublicKey,
) -> Result<Registered, PgError> {
    let e = db(url);
    let encoded = key.encode();
    let inserted = client
        .execute(
            "INSERT INTO concierge_instance (instance, public_key) VALUES ($1, $2) ON CONFLICT (instance) DO NOTHING",
            &[&instance, &encoded],
        )
        .await
        .map_err(&e)?;
    if inserted == 1 {
        return Ok(Registered::New);
    }
    match key_state(client, url, instance, key).await? {
        KeyState::Registered => Ok(Registered::Same),
        // The insert found a row and the lookup none: someone deleted it in between (only the tables' owner
        // can); no reason to claim success.
        KeyState::NotRegistered => Err(PgError::Db {
            at: shown(url),
            reason: format!("instance `{instance}` could not be registered"),
        }),
        KeyState::Other { have, at } => Err(PgError::OtherKey {
            instance: instance.to_string(),
            have,
            at,
        }),
    }
}

/// Whether the store trusts `key` for `instance`'s chains: the key central verification will check them with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyState {
    /// Registered with this key.
    Registered,
    /// Not registered: central verification reports the instance NOT VERIFIED.
    NotRegistered,
    /// Registered with another key (`have`, since `at`): the instance's records will not verify.
    Other { have: String, at: String },
}

/// Look up the key registered for `instance` and compare it with `key`.
pub(crate) async fn key_state(
    client: &tokio_postgres::Client,
    url: &str,
    instance: &str,
    key: &crate::audit::keys::PublicKey,
) -> Result<KeyState, PgError> {
    let row = client
        .query_opt(
            "SELECT public_key, to_char(registered_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
             FROM concierge_instance WHERE instance = $1",
            &[&instance],
        )
        .await
        .map_err(db(url))?;
    Ok(match row {
        None => KeyState::NotRegistered,
        Some(row) => {
            let (have, at): (String, String) = (row.get(0), row.get(1));
            if have == key.encode() {
                KeyState::Registered
            } else {
                KeyState::Other { have, at }
            }
        }
    })
}

/// Load PEM roots, or the system's.
fn roots(ca_file: Option<&Path>) -> Result<Arc<rustls::RootCertStore>, PgError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            use rustls::pki_types::pem::PemObject;
            let fail = |reason: String| PgError::Ca {
                path: path.display().to_string(),
                reason,
            };
            let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&bytes) {
                let cert = cert.map_err(|e| fail(e.to_string()))?;
                roots.add(cert).map_err(|e| fail(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(fail("no PEM CERTIFICATE block".into()));
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    Ok(Arc::new(roots))
}
