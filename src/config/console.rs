//! `[console]`: the read-only console for marketers and reviewers, on the admin listener (off by default).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{resolve, Check};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsole {
    pub enabled: Option<bool>,
    pub token_file: Option<PathBuf>,
}

/// The console's access token: read from `console.token_file` at start, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsoleToken(pub(crate) String);

impl std::fmt::Debug for ConsoleToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConsoleToken(…)")
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsoleSettings {
    /// `Some` when the console is on.
    pub token: Option<ConsoleToken>,
    pub token_file: Option<PathBuf>,
}

/// Fewest characters a token may have: 128 bits written as hex, or a long passphrase.
pub const MIN_TOKEN_CHARS: usize = 32;

pub(super) fn validate_console(
    c: &mut Check,
    raw: Option<RawConsole>,
    base: &Path,
    admin_on: bool,
) -> ConsoleSettings {
    let raw = raw.unwrap_or_default();
    if !raw.enabled.unwrap_or(false) {
        return ConsoleSettings::default();
    }
    if !admin_on {
        c.fail(
            "console.enabled",
            "the console is served on the admin listener, which is off (admin.enabled = false or --admin off)",
        );
    }
    let Some(file) = raw.token_file else {
        c.fail(
            "console.token_file",
            "is required with console.enabled = true: a file holding the access token (e.g. `openssl rand -hex 32 > console.token`)",
        );
        return ConsoleSettings::default();
    };
    let path = resolve(base, &file);
    let token = match std::fs::read_to_string(&path) {
        Ok(text) => {
            let t = text.trim().to_string();
            if t.chars().count() < MIN_TOKEN_CHARS {
                c.fail(
                    "console.token_file",
                    format!("{}: the token is shorter than {MIN_TOKEN_CHARS} characters; write e.g. `openssl rand -hex 32` into it", path.display()),
                );
                None
            } else if t.chars().any(|ch| ch.is_control() || ch == ' ') {
                c.fail(
                    "console.token_file",
                    format!(
                        "{}: the token holds spaces or control characters",
                        path.display()
                    ),
                );
                None
            } else {
                Some(ConsoleToken(t))
            }
        }
        Err(e) => {
            c.fail(
                "console.token_file",
                format!("{}: cannot read it: {e}", path.display()),
            );
            None
        }
    };
    ConsoleSettings {
        token,
        token_file: Some(path),
    }
}
