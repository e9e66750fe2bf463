//! Where the readers (`audit export`, `audit stats`, `feedback report`, `experiments report`) read records
//! from: one or more local audit folders (their union: one instance each), or the PostgreSQL record store
//! (every instance).

use std::path::PathBuf;

use clap::Args;
use serde_json::Value;

use crate::config::Settings;
use crate::postgres::read::{Order, Pushdown};
use crate::postgres::PostgresSettings;

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

/// Records to read.
pub enum Records {
    Files(Vec<PathBuf>),
    Store(PostgresSettings),
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

impl Records {
    /// For messages.
    pub fn describe(&self) -> String {
        match self {
            Records::Files(dirs) => dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            Records::Store(db) => format!("the record store {}", crate::postgres::shown(&db.url)),
        }
    }

    /// Every complete line of `stream`: folder after folder in chain order, or from the store (`order`,
    /// narrowed by `pushdown`; the caller still filters every line).
    pub fn lines(
        &self,
        stream: &str,
        pushdown: &Pushdown,
        order: Order,
        mut f: impl FnMut(&[u8]),
    ) -> Result<(), String> {
        match self {
            Records::Files(dirs) => {
                for dir in dirs {
                    let sdir = dir.join(stream);
                    if !sdir.is_dir() {
                        continue;
                    }
                    let mut read = || -> std::io::Result<()> {
                        for (_, path) in crate::audit::chain::segments(&sdir)? {
                            for line in crate::audit::chain::Lines::open(&path)? {
                                let (_, line, complete) = line?;
                                if !complete {
                                    break; // an unfinished last line
                                }
                                f(&line);
                            }
                        }
                        Ok(())
                    };
                    read().map_err(|e| format!("{}: {e}", sdir.display()))?;
                }
                Ok(())
            }
            Records::Store(db) => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                rt.block_on(async {
                    let client = db.connect().await?;
                    crate::postgres::read::for_each(&client, &db.url, stream, pushdown, order, f)
                        .await
                })
                .map(|_| ())
                .map_err(|e| e.to_string())
            }
        }
    }

    /// [`Records::lines`], each line that is JSON with its value.
    pub fn values(
        &self,
        stream: &str,
        pushdown: &Pushdown,
        order: Order,
        mut f: impl FnMut(&[u8], &Value),
    ) -> Result<(), String> {
        self.lines(stream, pushdown, order, |line| {
            if let Ok(v) = serde_json::from_slice::<Value>(line) {
                f(line, &v);
            }
        })
    }
}
