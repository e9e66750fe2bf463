//! Consent: reading the visitor's signals (GPC, IAB TCF v2.2, GPP, US Privacy, our own cookie) and deciding
//! which personalization tiers a request may use. Pure and synchronous.
//!
//! So far: the bit reader and the TCF v2.2 decoder. The other signals, the jurisdiction policy and the
//! `Decision` follow.

pub mod bits;
pub mod gpp;
pub mod tcf;
pub mod usp;
