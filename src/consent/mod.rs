//! Consent: reading the visitor's signals (GPC, DNT, IAB TCF v2.2, GPP, US Privacy, our own first-party
//! cookie) and deciding which personalization tiers a request may use, with reasons. Pure and synchronous.
//!
//! - [`tcf`], [`gpp`], [`usp`]: decoders (own code, bounded, never panicking, fuzzed);
//! - [`signals`]: what one request carries, read from headers, cookies and query parameters;
//! - [`policy`]: jurisdiction regimes and the [`policy::Decision`];
//! - [`texts`]: the banner's and choices page's words per language, chosen by `Accept-Language`.

pub(crate) mod bits;
pub mod choice;
pub(crate) mod cookies;
pub mod first_party;
pub mod gpp;
pub mod policy;
pub mod signals;
pub mod tcf;
pub mod texts;
pub mod usp;

/// Everything the consent engine is configured with (`[consent]` in the config file).
#[derive(Debug, Clone)]
pub struct ConsentSettings {
    pub policy: policy::Policy,
    pub names: signals::SignalNames,
    /// Written into the first-party cookie and every proof-of-consent record; change it when the banner's
    /// wording changes, so a reviewer knows which text a visitor agreed to.
    pub banner_version: String,
    /// Serve `/.well-known/gpc.json`.
    pub gpc_well_known: bool,
    /// Its `lastUpdate` (YYYY-MM-DD).
    pub gpc_last_update: Option<String>,
    /// Where the first-party cookie's keys come from (`consent.cookie_key`, `consent.cookie_previous_keys`).
    pub key_files: first_party::CookieKeyFiles,
    /// The keys themselves, loaded at start ([`ConsentSettings::load_keys`]); none: no cookie verifies.
    pub keys: std::sync::Arc<first_party::CookieKeys>,
    /// The banner's and choices page's texts per language, and the privacy policy link.
    pub texts: std::sync::Arc<texts::Catalog>,
}

impl ConsentSettings {
    /// Load the cookie keys (creating the default one at `<audit dir>/cookie.key` when `create` is set).
    pub fn load_keys(
        &mut self,
        audit_dir: &std::path::Path,
        create: bool,
    ) -> Result<(), first_party::CookieKeyError> {
        let keys = first_party::CookieKeys::load(
            &self.key_files,
            &first_party::default_key_path(audit_dir),
            create,
        )?;
        self.keys = std::sync::Arc::new(keys);
        Ok(())
    }
}

impl Default for ConsentSettings {
    fn default() -> Self {
        ConsentSettings {
            policy: policy::Policy::default(),
            names: signals::SignalNames::default(),
            banner_version: "1".into(),
            gpc_well_known: false,
            gpc_last_update: None,
            key_files: Default::default(),
            keys: Default::default(),
            texts: Default::default(),
        }
    }
}
