//! MMDB databases (MaxMind GeoIP2/GeoLite2, IPinfo): opened fully into memory, verified before use, read by
//! configurable field paths (`traits.organization`, `autonomous_system_organization`, `country.iso_code`).
//!
//! Invariant: a database that fails verification is never used (the caller keeps the previous one); a lookup
//! error on a verified database counts as "no data" — it can never fail a request.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnetwork::IpNetwork;
use maxminddb::{PathElement, Reader};

#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct MmdbError {
    pub path: PathBuf,
    pub reason: String,
}

/// A dotted field path (`traits.organization`, `subdivisions.0.iso_code`), parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath(Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

impl FieldPath {
    pub fn parse(text: &str) -> Option<FieldPath> {
        if text.is_empty() {
            return None;
        }
        let mut out = Vec::new();
        for part in text.split('.') {
            if part.is_empty() {
                return None;
            }
            out.push(match part.parse::<usize>() {
                Ok(i) => Segment::Index(i),
                Err(_) => Segment::Key(part.to_string()),
            });
        }
        Some(FieldPath(out))
    }

    fn elements(&self) -> Vec<PathElement<'_>> {
        self.0
            .iter()
            .map(|s| match s {
                Segment::Key(k) => PathElement::Key(k),
                Segment::Index(i) => PathElement::Index(*i),
            })
            .collect()
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            match s {
                Segment::Key(k) => f.write_str(k)?,
                Segment::Index(n) => write!(f, "{n}")?,
            }
        }
        Ok(())
    }
}

/// One opened, verified database.
pub struct Mmdb {
    pub path: PathBuf,
    reader: Reader<Vec<u8>>,
    /// `database_type` from the metadata, e.g. `GeoIP2-City`.
    pub database_type: String,
}

impl std::fmt::Debug for Mmdb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mmdb")
            .field("path", &self.path)
            .field("type", &self.database_type)
            .finish()
    }
}

/// A value found in a database, with the network the database stores it under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub value: String,
    pub network: Option<IpNetwork>,
}

impl Mmdb {
    /// Read and verify the whole file (a broken search tree or data section is refused here, off the hot path).
    pub fn open(path: &Path) -> Result<Mmdb, MmdbError> {
        let fail = |reason: String| MmdbError {
            path: path.to_path_buf(),
            reason,
        };
        let reader = Reader::open_readfile(path).map_err(|e| fail(format!("cannot open: {e}")))?;
        reader
            .verify()
            .map_err(|e| fail(format!("database is corrupt: {e}")))?;
        let database_type = reader.metadata().database_type.clone();
        Ok(Mmdb {
            path: path.to_path_buf(),
            reader,
            database_type,
        })
    }

    /// The string (or number, as text) at `path` for `ip`; `None` when the database has no data for it.
    pub fn get(&self, ip: IpAddr, path: &FieldPath) -> Option<Found> {
        let result = match self.reader.lookup(ip) {
            Ok(r) if r.has_data() => r,
            _ => return None,
        };
        let network = result.network().ok();
        let elements = path.elements();
        let value = match result.decode_path::<serde_json::Value>(&elements) {
            Ok(Some(serde_json::Value::String(s))) => s,
            Ok(Some(serde_json::Value::Number(n))) => n.to_string(),
            Ok(Some(serde_json::Value::Bool(b))) => b.to_string(),
            _ => return None,
        };
        Some(Found { value, network })
    }

    /// Whether `path` holds `true` for `ip` (anonymous-IP flags such as `is_anonymous_vpn`).
    pub fn flag(&self, ip: IpAddr, path: &FieldPath) -> bool {
        self.first_true(ip, std::slice::from_ref(path)).is_some()
    }

    /// The index of the first of `paths` that holds `true` for `ip`, with one tree walk for all of them.
    pub fn first_true(&self, ip: IpAddr, paths: &[FieldPath]) -> Option<usize> {
        let result = match self.reader.lookup(ip) {
            Ok(r) if r.has_data() => r,
            _ => return None,
        };
        paths
            .iter()
            .position(|p| matches!(result.decode_path::<bool>(&p.elements()), Ok(Some(true))))
    }
}

/// A file of the shared MaxMind test data (`../shared/testdata/maxmind/test-data`), for tests.
#[cfg(test)]
pub(crate) fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/testdata/maxmind/test-data")
        .join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row of the shared EXPECTATIONS.tsv, read through our field paths.
    #[test]
    fn shared_expectations_hold() {
        let tsv = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/testdata/maxmind/EXPECTATIONS.tsv"),
        )
        .expect("EXPECTATIONS.tsv (../shared must sit beside the project)");
        let mut checked = 0;
        for line in tsv
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let cols: Vec<&str> = line.split('\t').collect();
            let [file, ip, path, expected] = cols[..] else {
                panic!("bad row {line}")
            };
            let db = Mmdb::open(&testdata(file)).unwrap_or_else(|e| panic!("{e}"));
            let ip: IpAddr = ip.parse().expect("ip");
            if expected == "NOT FOUND" {
                assert!(
                    db.reader.lookup(ip).map(|r| !r.has_data()).unwrap_or(true),
                    "{line}"
                );
            } else {
                let found = db
                    .get(ip, &FieldPath::parse(path).expect("path"))
                    .unwrap_or_else(|| panic!("{line}"));
                assert_eq!(found.value, expected, "{line}");
                assert!(found.network.is_some_and(|n| n.contains(ip)), "{line}");
            }
            checked += 1;
        }
        assert!(checked >= 20, "only {checked} rows");
    }

    #[test]
    fn broken_databases_are_refused_at_open() {
        for name in [
            "GeoIP2-City-Test-Invalid-Node-Count.mmdb",
            "MaxMind-DB-test-broken-pointers-24.mmdb",
            "MaxMind-DB-test-broken-search-tree-24.mmdb",
        ] {
            let err = Mmdb::open(&testdata(name)).expect_err(name);
            assert!(err.to_string().contains(name), "{err}");
        }
        let err = Mmdb::open(&testdata("does-not-exist.mmdb")).expect_err("missing");
        assert!(err.to_string().contains("cannot open"), "{err}");
    }

    #[test]
    fn field_paths() {
        assert_eq!(
            FieldPath::parse("traits.organization").unwrap().to_string(),
            "traits.organization"
        );
        assert_eq!(
            FieldPath::parse("subdivisions.0.iso_code").unwrap().0[1],
            Segment::Index(0)
        );
        for bad in ["", "a..b", ".a", "a."] {
            assert!(FieldPath::parse(bad).is_none(), "{bad}");
        }
        let db = Mmdb::open(&testdata("GeoIP2-City-Test.mmdb")).expect("city");
        let sub = FieldPath::parse("subdivisions.0.iso_code").unwrap();
        assert_eq!(
            db.get("216.160.83.56".parse().unwrap(), &sub)
                .map(|f| f.value)
                .as_deref(),
            Some("WA")
        );
        let anon = Mmdb::open(&testdata("GeoIP2-Anonymous-IP-Test.mmdb")).expect("anon");
        let vpn = FieldPath::parse("is_anonymous_vpn").unwrap();
        assert!(anon.flag("1.2.0.1".parse().unwrap(), &vpn));
        assert!(!anon.flag("8.8.8.8".parse().unwrap(), &vpn));
        let ent = Mmdb::open(&testdata("GeoIP2-Enterprise-Test.mmdb")).expect("enterprise");
        let user_type = FieldPath::parse("traits.user_type").unwrap();
        let found = ent
            .get("214.78.120.5".parse().unwrap(), &user_type)
            .expect("user type");
        assert_eq!(found.value, "residential");
        assert_eq!(found.network.unwrap().to_string(), "214.78.120.0/22");
    }
}
