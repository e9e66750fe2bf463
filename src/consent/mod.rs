//! Consent: reading the visitor's signals (GPC, DNT, IAB TCF v2.2, GPP, US Privacy, our own first-party
//! cookie) and deciding which personalization tiers a request may use, with reasons. Pure and synchronous.
//!
//! - [`tcf`], [`gpp`], [`usp`]: decoders (own code, bounded, never panicking, fuzzed);
//! - [`signals`]: what one request carries, read from headers, cookies and query parameters;
//! - [`policy`]: jurisdiction regimes and the [`policy::Decision`].

pub mod bits;
pub mod gpp;
pub mod policy;
pub mod signals;
pub mod tcf;
pub mod usp;
