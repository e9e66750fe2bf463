//! Where the readers (`audit export`, `audit stats`, `feedback report`, `experiments report`) read records
//! from: one or more local audit folders (their union: one instance each), or the PostgreSQL record store
//! (every instance).

use std::path::PathBuf;

use clap::Args;

use crate::config::Settings;
use crate::postgres::PostgresSettings;
use crate::records::Records;

#[derive(Debug, Args)]
pub struct ReadSource {
    /// Audit directories (default: audit.dir from --config, else ./audit). Several: their union, e.g. the
    /// folders of several instances.
    #[arg(value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// TOML configuration file (audit.dir, or [audit.postgres] when no DIR and no --postgres is given).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Read every instance's records from the PostgreSQL record store (postgres://user@host:port/db).
    #[arg(long, value_name = "URL", conflicts_with = "dirs")]
    pub postgres: Option<String>,
    /// With --postgres: a file holding the database password (else CONCIERGE_POSTGRES_PASSWORD).
    #[arg(long, value_name = "FILE", requires = "postgres")]
    pub password_file: Option<PathBuf>,
    /// With --postgres: PEM roots for the server's certificate (else the system's).
    #[arg(long, value_name = "FILE", requires = "postgres")]
    pub ca_file: Option<PathBuf>,
}

impl ReadSource {
    /// Which records: `--postgres`, else the folders given, else `[audit.postgres]` of `--config`, else its
    /// `audit.dir`, else `./audit`. A folder that is not a directory is an error.
    pub fn open(&self, settings: &Option<Settings>) -> Result<Records, String> {
        if let Some(url) = &self.postgres {
            url.parse::<tokio_postgres::Config>()
                .map_err(|e| format!("--postgres: not a PostgreSQL URL: {e}"))?;
            return Ok(Records::Store(PostgresSettings::for_url(
                url,
                self.password_file.clone(),
                self.ca_file.clone(),
            )));
        }
        if self.dirs.is_empty() {
            if let Some(db) = settings.as_ref().and_then(|s| s.audit.postgres.clone()) {
                return Ok(Records::Store(db));
            }
        }
        let dirs = if self.dirs.is_empty() {
            vec![settings
                .as_ref()
                .map_or_else(|| PathBuf::from("audit"), |s| s.audit.dir.clone())]
        } else {
            self.dirs.clone()
        };
        if let Some(d) = dirs.iter().find(|d| !d.is_dir()) {
            return Err(format!("{} is not a directory", d.display()));
        }
        Ok(Records::Files(dirs))
    }
}
