//! Evidence for the page views that leave no decision record: per-interval counts of every page decision by
//! jurisdiction, the signal that decided it and whether the company lookup ran.
//!
//! A page where GPC, a US Privacy or GPP opt-out or a refusal was honoured writes no decision record by default
//! (one per page view would be a log of visits). Instead every classified page request is counted here, and the
//! counts of each interval go into the audit chain as one `counts` record — hash-chained and covered by the next
//! signed checkpoint like any other, so a reviewer can show that, say, 12,408 GPC page views in November ran no
//! lookup. `audit.record_refusals = true` adds a decision record per such page as well.
//!
//! Invariant: counting allocates nothing per request (the key is a small `Copy` value); counts taken for a
//! record that could not be queued are put back, so nothing counted is lost short of a crash (which loses at most
//! the current interval).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;

use crate::consent::policy::{Decision, Regime};

/// Longest region code kept as is (`US-CA`, `DE`, `unknown`); longer ones (none today) are cut.
const REGION_BYTES: usize = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    regime: Regime,
    region: [u8; REGION_BYTES],
    region_len: u8,
    basis: &'static str,
    lookup: bool,
}

impl Key {
    fn region(&self) -> &str {
        std::str::from_utf8(&self.region[..self.region_len as usize]).unwrap_or("?")
    }
}

/// One row of a `counts` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Count {
    pub regime: &'static str,
    pub region: String,
    /// What decided the firmographic tier ([`Decision::basis`]).
    pub signal: &'static str,
    /// `ran` or `not_run`.
    pub lookup: &'static str,
    pub decisions: u64,
}

/// The `counts` record: page decisions between `since` and `until` (RFC 3339, UTC, milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CountsRecord {
    pub time: String,
    pub since: String,
    pub until: String,
    pub counts: Vec<Count>,
}

struct Interval {
    since: SystemTime,
    counts: HashMap<Key, u64>,
}

/// The running counts of the current interval.
pub struct Tally {
    current: Mutex<Interval>,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            current: Mutex::new(Interval {
                since: SystemTime::now(),
                counts: HashMap::new(),
            }),
        }
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

impl Tally {
    /// Count one page decision.
    pub fn count(&self, decision: &Decision, lookup_ran: bool) {
        let r = decision.jurisdiction.region.as_bytes();
        let n = r.len().min(REGION_BYTES);
        let mut region = [0u8; REGION_BYTES];
        region[..n].copy_from_slice(&r[..n]);
        let key = Key {
            regime: decision.jurisdiction.regime,
            region,
            region_len: n as u8,
            basis: decision.basis,
            lookup: lookup_ran,
        };
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        *cur.counts.entry(key).or_default() += 1;
    }

    /// The counts since the last take, as a record (none if nothing was counted); the next interval starts now.
    pub fn take(&self) -> Option<CountsRecord> {
        let now = SystemTime::now();
        let (since, counts) = {
            let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
            if cur.counts.is_empty() {
                cur.since = now;
                return None;
            }
            let since = std::mem::replace(&mut cur.since, now);
            (since, std::mem::take(&mut cur.counts))
        };
        let mut rows: Vec<Count> = counts
            .into_iter()
            .map(|(k, decisions)| Count {
                regime: k.regime.name(),
                region: k.region().to_string(),
                signal: k.basis,
                lookup: if k.lookup { "ran" } else { "not_run" },
                decisions,
            })
            .collect();
        rows.sort_by(|a, b| {
            (a.regime, &a.region, a.signal, a.lookup)
                .cmp(&(b.regime, &b.region, b.signal, b.lookup))
        });
        Some(CountsRecord {
            time: rfc3339(now),
            since: rfc3339(since),
            until: rfc3339(now),
            counts: rows,
        })
    }

    /// Put back the counts of a record that could not be written (they join the current interval, which then
    /// starts at the record's `since`).
    pub fn restore(&self, record: CountsRecord) {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(t) = humantime::parse_rfc3339(&record.since) {
            cur.since = cur.since.min(t);
        }
        for c in record.counts {
            let r = c.region.as_bytes();
            let n = r.len().min(REGION_BYTES);
            let mut region = [0u8; REGION_BYTES];
            region[..n].copy_from_slice(&r[..n]);
            let regime = if c.regime == "opt-out" {
                Regime::OptOut
            } else {
                Regime::OptIn
            };
            let key = Key {
                regime,
                region,
                region_len: n as u8,
                basis: c.signal,
                lookup: c.lookup == "ran",
            };
            *cur.counts.entry(key).or_default() += c.decisions;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::policy::{Jurisdiction, Tier};
    use std::collections::BTreeSet;

    fn decision(regime: Regime, region: &str, basis: &'static str) -> Decision {
        Decision {
            jurisdiction: Jurisdiction {
                regime,
                region: region.into(),
            },
            permitted: BTreeSet::from([Tier::Anonymous]),
            reasons: vec![],
            show_banner: false,
            consent_id: None,
            basis,
        }
    }

    #[test]
    fn counts_by_jurisdiction_signal_and_lookup_and_nothing_is_lost() {
        let t = Tally::default();
        assert!(t.take().is_none(), "nothing counted, no record");
        for _ in 0..3 {
            t.count(&decision(Regime::OptOut, "US-CA", "gpc"), false);
        }
        t.count(
            &decision(Regime::OptOut, "US-CA", "opt-out:not-withdrawn"),
            true,
        );
        t.count(&decision(Regime::OptIn, "DE", "opt-in:no-grant"), false);
        let r = t.take().unwrap();
        let rows: Vec<(&str, &str, &str, &str, u64)> = r
            .counts
            .iter()
            .map(|c| (c.regime, c.region.as_str(), c.signal, c.lookup, c.decisions))
            .collect();
        assert_eq!(
            rows,
            [
                ("opt-in", "DE", "opt-in:no-grant", "not_run", 1),
                ("opt-out", "US-CA", "gpc", "not_run", 3),
                ("opt-out", "US-CA", "opt-out:not-withdrawn", "ran", 1),
            ]
        );
        assert!(r.since <= r.until);
        assert!(t.take().is_none(), "a new interval");
        // A record that could not be written comes back whole.
        t.count(&decision(Regime::OptOut, "US-CA", "gpc"), false);
        t.restore(r);
        let again = t.take().unwrap();
        let gpc = again.counts.iter().find(|c| c.signal == "gpc").unwrap();
        assert_eq!(gpc.decisions, 4);
        assert_eq!(again.counts.len(), 3);
    }
}
