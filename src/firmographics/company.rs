//! Companies and where they come from: the account identity in rule files (`rules/accounts/*.toml`) and vendor
//! exports (CSV or JSON Lines of `network → domain, name, industry, size, …`).
//!
//! Invariant: every error names its file, and line and column where the file format gives one; one bad row or
//! file fails the whole load, so a half-read source never replaces a good one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

/// A company as the rest of the proxy sees it. Company data, not personal data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Company {
    /// The account's or company's web domain, the key rule files use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub industry: Option<String>,
    /// Employee range as written by the source, e.g. `1000-4999`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub employees: Option<String>,
    /// ISO 3166-1 alpha-2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// The account owner (sales/marketing contact) from the rule file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Whether this is a target account from the rule files.
    pub account: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("{file}{}: {message}", location.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
pub struct SourceError {
    pub file: PathBuf,
    /// Line and column, 1-based.
    pub location: Option<(usize, usize)>,
    pub message: String,
}

impl SourceError {
    pub fn new(
        file: &Path,
        location: Option<(usize, usize)>,
        message: impl Into<String>,
    ) -> SourceError {
        SourceError {
            file: file.to_path_buf(),
            location,
            message: message.into(),
        }
    }
}

/// `"ACME Corp."`, `"Acme Corporation"`, `"acme, inc"` → `"acme"`: lowercase, punctuation dropped, legal-form
/// suffixes removed. Used to map database organization names onto accounts' names and aliases.
pub fn normalize_org(name: &str) -> String {
    const SUFFIXES: &[&str] = &[
        "inc",
        "incorporated",
        "corp",
        "corporation",
        "co",
        "company",
        "llc",
        "ltd",
        "limited",
        "plc",
        "gmbh",
        "ag",
        "sa",
        "sas",
        "sarl",
        "bv",
        "nv",
        "oy",
        "ab",
        "as",
        "spa",
        "srl",
        "pty",
        "kk",
        "group",
        "holdings",
        "the",
    ];
    // Dots join ("S.A." → "sa"); other punctuation separates.
    let cleaned: String = name
        .chars()
        .filter(|c| *c != '.')
        .map(|c| {
            if c.is_alphanumeric() {
                c.to_lowercase().next().unwrap_or(c)
            } else {
                ' '
            }
        })
        .collect();
    let mut words: Vec<&str> = cleaned.split_whitespace().collect();
    while words.len() > 1 && words.last().is_some_and(|w| SUFFIXES.contains(w)) {
        words.pop();
    }
    if words.len() > 1 && words[0] == "the" {
        words.remove(0);
    }
    words.join(" ")
}

// ------------------------------------------------------------------------------------------------ accounts

#[derive(Debug, Deserialize)]
struct RawAccountFile {
    account: Option<toml::Spanned<RawAccount>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    domain: toml::Spanned<String>,
    name: String,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    networks: Vec<toml::Spanned<String>>,
    industry: Option<String>,
    employees: Option<String>,
    country: Option<toml::Spanned<String>>,
    owner: Option<String>,
}

/// One target account from a rule file.
#[derive(Debug, Clone)]
pub struct Account {
    pub file: PathBuf,
    pub company: Arc<Company>,
    pub aliases: Vec<String>,
    pub networks: Vec<IpNetwork>,
}

/// A hand-written source file's text, at most `max` bytes. Not UTF-8: the error says where (`line:column` of
/// the first byte that is not, and the byte), so the editor can find it.
pub fn read_text(path: &Path, max: u64) -> Result<String, (Option<(usize, usize)>, String)> {
    let meta = std::fs::metadata(path).map_err(|e| (None, format!("cannot read: {e}")))?;
    if meta.len() > max {
        return Err((None, format!("larger than {max} bytes")));
    }
    let bytes = std::fs::read(path).map_err(|e| (None, format!("cannot read: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        // Everything before `at` is valid UTF-8.
        let before = std::str::from_utf8(&bytes[..at]).unwrap_or_default();
        let loc = line_col(before, at);
        (
            Some(loc),
            format!(
                "not UTF-8: byte 0x{:02X} at line {}, column {} (save the file as UTF-8)",
                bytes[at], loc.0, loc.1
            ),
        )
    })
}

/// 1-based line and column of a byte offset.
/// Why `text` is not an IP network, in plain words (it failed to parse as one).
pub fn why_not_a_network(text: &str) -> String {
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let Ok(ip) = addr.trim().parse::<std::net::IpAddr>() else {
        return format!("`{text}` is not a network: `{addr}` is not an IP address");
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    match prefix.map(|p| p.trim().parse::<u32>()) {
        Some(Err(_)) => format!(
            "`{text}` is not a network: the prefix after `/` must be a number from 0 to {max}"
        ),
        Some(Ok(p)) if p > max => format!(
            "`{text}` is not a network: the prefix /{p} is longer than {max}, the most an IPv{} network has",
            if ip.is_ipv4() { 4 } else { 6 }
        ),
        _ => format!("`{text}` is not a network"),
    }
}

pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Parse the `[account]` identity of one rule file (`None` for rule files without one, e.g. segments); every
/// problem of the file at once.
pub fn parse_account(file: &Path, text: &str) -> Result<Option<Account>, Vec<SourceError>> {
    let (raw, read_errors) = crate::tomlfile::read::<RawAccountFile>(text);
    let mut errors: Vec<SourceError> = read_errors
        .into_iter()
        .map(|p| SourceError::new(file, p.span.map(|s| line_col(text, s.start)), p.message))
        .collect();
    let Some(raw) = raw else {
        return Err(errors);
    };
    let Some(account) = raw.account else {
        return if errors.is_empty() {
            Ok(None)
        } else {
            Err(errors)
        };
    };
    let account = account.into_inner();
    let at = |span: std::ops::Range<usize>| Some(line_col(text, span.start));
    let domain = account.domain.get_ref().trim().to_ascii_lowercase();
    let domain_ok = !domain.is_empty()
        && domain.contains('.')
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
        && !domain.starts_with(['.', '-'])
        && !domain.ends_with(['.', '-']);
    if !domain_ok {
        errors.push(SourceError::new(
            file,
            at(account.domain.span()),
            format!(
                "account.domain `{}` is not a domain name like \"acme.com\"",
                account.domain.get_ref()
            ),
        ));
    }
    if account.name.trim().is_empty() {
        errors.push(SourceError::new(file, None, "account.name is empty"));
    }
    let mut networks = Vec::new();
    for n in &account.networks {
        match n.get_ref().parse::<IpNetwork>() {
            Ok(net) if net.network() == net.ip() => networks.push(net),
            Ok(net) => errors.push(SourceError::new(
                file,
                at(n.span()),
                format!(
                    "network `{}` has host bits set; did you mean `{}/{}`?",
                    n.get_ref(),
                    net.network(),
                    net.prefix()
                ),
            )),
            Err(_) => errors.push(SourceError::new(
                file,
                at(n.span()),
                format!(
                    "{}; write e.g. \"203.0.113.0/24\" or \"2001:db8::/48\"",
                    why_not_a_network(n.get_ref())
                ),
            )),
        }
    }
    let country = match account.country {
        Some(c)
            if c.get_ref().len() == 2 && c.get_ref().bytes().all(|b| b.is_ascii_alphabetic()) =>
        {
            Some(c.get_ref().to_ascii_uppercase())
        }
        Some(c) => {
            errors.push(SourceError::new(
                file,
                at(c.span()),
                format!(
                    "country `{}` is not an ISO 3166-1 alpha-2 code like \"US\"",
                    c.get_ref()
                ),
            ));
            None
        }
        None => None,
    };
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.location);
        return Err(errors);
    }
    Ok(Some(Account {
        file: file.to_path_buf(),
        company: Arc::new(Company {
            domain: Some(domain),
            name: account.name.trim().to_string(),
            industry: account.industry,
            employees: account.employees,
            country,
            owner: account.owner,
            account: true,
        }),
        aliases: account.aliases,
        networks,
    }))
}

/// All accounts under `rules_dir/accounts/` (a missing folder means no accounts). Two files may not claim
/// the same domain.
pub fn load_accounts(rules_dir: &Path) -> Result<Vec<Account>, Vec<SourceError>> {
    let dir = rules_dir.join("accounts");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(vec![SourceError::new(
                &dir,
                None,
                format!("cannot read the folder: {e}"),
            )])
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut accounts: Vec<Account> = Vec::new();
    let mut errors = Vec::new();
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    for file in files {
        let text = match read_text(&file, crate::rules::MAX_FILE_BYTES) {
            Ok(t) => t,
            Err((loc, e)) => {
                errors.push(SourceError::new(&file, loc, e));
                continue;
            }
        };
        match parse_account(&file, &text) {
            Ok(Some(a)) => {
                let domain = a.company.domain.clone().unwrap_or_default();
                if let Some(other) = seen.insert(domain.clone(), file.clone()) {
                    errors.push(SourceError::new(
                        &file,
                        None,
                        format!("account {domain} is also defined in {}", other.display()),
                    ));
                }
                accounts.push(a);
            }
            Ok(None) => {}
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(accounts)
    } else {
        Err(errors)
    }
}

// ------------------------------------------------------------------------------------------------ vendor files

/// What a vendor row says about a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VendorEntry {
    Company(Arc<Company>),
    /// The network belongs to an ISP, a hosting provider or similar (`type` column): not a company visitor.
    NotACompany {
        kind: String,
        name: String,
    },
}

/// Organisation types (IPinfo `type`, MaxMind `user_type`) that are not a company's own network.
pub fn non_company_type(kind: &str) -> bool {
    matches!(
        kind.to_ascii_lowercase().as_str(),
        "isp"
            | "hosting"
            | "residential"
            | "cellular"
            | "mobile"
            | "content_delivery_network"
            | "cdn"
            | "consumer_privacy_network"
            | "cafe"
            | "traveler"
            | "router"
            | "search_engine_spider"
    )
}

/// Read a CSV (header row) or JSON Lines file (`.jsonl`, `.ndjson`) of networks and companies. Columns / keys
/// (case-insensitive): `network` (CIDR) or `start_ip` + `end_ip`; `domain`; `name` (or `company`,
/// `organization`); `industry`; `employees` (or `size`); `country`; `type`.
pub fn load_vendor_file(path: &Path) -> Result<Vec<(IpNetwork, VendorEntry)>, SourceError> {
    let jsonl = path
        .extension()
        .is_some_and(|x| x == "jsonl" || x == "ndjson");
    let file = std::fs::File::open(path)
        .map_err(|e| SourceError::new(path, None, format!("cannot open: {e}")))?;
    let mut out = Vec::new();
    if jsonl {
        use std::io::BufRead;
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| SourceError::new(path, Some((i + 1, 1)), e.to_string()))?;
            if line.trim().is_empty() {
                continue;
            }
            let obj: HashMap<String, serde_json::Value> =
                serde_json::from_str(&line).map_err(|e| {
                    SourceError::new(
                        path,
                        Some((i + 1, e.column())),
                        format!("not a JSON object: {e}"),
                    )
                })?;
            let row: HashMap<String, String> = obj
                .into_iter()
                .filter_map(|(k, v)| {
                    let v = match v {
                        serde_json::Value::String(s) => s,
                        serde_json::Value::Number(n) => n.to_string(),
                        _ => return None,
                    };
                    Some((k.to_ascii_lowercase(), v))
                })
                .collect();
            vendor_row(path, i + 1, &row, &mut out)?;
        }
    } else {
        let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(file);
        let headers: Vec<String> = reader
            .headers()
            .map_err(|e| SourceError::new(path, Some((1, 1)), format!("no header row: {e}")))?
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .collect();
        for (i, record) in reader.records().enumerate() {
            let line = i + 2;
            let record =
                record.map_err(|e| SourceError::new(path, Some((line, 1)), e.to_string()))?;
            let row: HashMap<String, String> = headers
                .iter()
                .cloned()
                .zip(record.iter().map(|v| v.trim().to_string()))
                .collect();
            vendor_row(path, line, &row, &mut out)?;
        }
    }
    Ok(out)
}

fn vendor_row(
    path: &Path,
    line: usize,
    row: &HashMap<String, String>,
    out: &mut Vec<(IpNetwork, VendorEntry)>,
) -> Result<(), SourceError> {
    let get = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| row.get(*k).filter(|v| !v.is_empty()).cloned())
    };
    let err = |m: String| SourceError::new(path, Some((line, 1)), m);
    let networks: Vec<IpNetwork> = if let Some(n) = get(&["network", "cidr", "range"]) {
        let net: IpNetwork = n.parse().map_err(|_| err(why_not_a_network(&n)))?;
        vec![IpNetwork::new(net.network(), net.prefix()).map_err(|e| err(e.to_string()))?]
    } else {
        let (Some(a), Some(b)) = (get(&["start_ip", "start"]), get(&["end_ip", "end"])) else {
            return Err(err(
                "needs a `network` column, or `start_ip` and `end_ip`".into()
            ));
        };
        let a: IpAddr = a
            .parse()
            .map_err(|_| err(format!("`{a}` is not an IP address")))?;
        let b: IpAddr = b
            .parse()
            .map_err(|_| err(format!("`{b}` is not an IP address")))?;
        range_to_networks(a, b).ok_or_else(|| err(format!("{a} – {b} is not a valid range")))?
    };
    let name = get(&["name", "company", "organization", "org"]).unwrap_or_default();
    let entry = match get(&["type", "user_type"]) {
        Some(kind) if non_company_type(&kind) => VendorEntry::NotACompany { kind, name },
        _ => {
            if name.is_empty() && get(&["domain"]).is_none() {
                return Err(err("a company row needs a `name` or a `domain`".into()));
            }
            VendorEntry::Company(Arc::new(Company {
                domain: get(&["domain"]).map(|d| d.to_ascii_lowercase()),
                name: if name.is_empty() {
                    get(&["domain"]).unwrap_or_default()
                } else {
                    name
                },
                industry: get(&["industry"]),
                employees: get(&["employees", "size", "employee_range"]),
                country: get(&["country", "country_code"]).map(|c| c.to_ascii_uppercase()),
                owner: None,
                account: false,
            }))
        }
    };
    for n in networks {
        out.push((n, entry.clone()));
    }
    Ok(())
}

/// The smallest set of CIDR blocks covering `first ..= last` (same family); `None` if reversed or mixed.
pub fn range_to_networks(first: IpAddr, last: IpAddr) -> Option<Vec<IpNetwork>> {
    let (mut lo, hi, bits, v4) = match (first, last) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) as u128, u32::from(b) as u128, 32u32, true),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128u32, false),
        _ => return None,
    };
    if lo > hi {
        return None;
    }
    let mut out = Vec::new();
    loop {
        // The largest aligned block starting at lo that does not pass hi.
        let mut size_bits = if lo == 0 {
            bits
        } else {
            lo.trailing_zeros().min(bits)
        };
        while size_bits > 0 {
            let span = if size_bits == 128 {
                u128::MAX
            } else {
                (1u128 << size_bits) - 1
            };
            match lo.checked_add(span) {
                Some(end) if end <= hi => break,
                _ => size_bits -= 1,
            }
        }
        let prefix = (bits - size_bits) as u8;
        let addr = if v4 {
            IpAddr::V4((lo as u32).into())
        } else {
            IpAddr::V6(lo.into())
        };
        out.push(IpNetwork::new(addr, prefix).ok()?);
        let span = if size_bits == 128 {
            u128::MAX
        } else {
            (1u128 << size_bits) - 1
        };
        match lo.checked_add(span).and_then(|e| e.checked_add(1)) {
            Some(next) if next <= hi => lo = next,
            _ => break,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_network_says_why() {
        assert!(why_not_a_network("10.0.0.0/33").contains("the prefix /33 is longer than 32"));
        assert!(why_not_a_network("2001:db8::/129").contains("longer than 128"));
        assert!(why_not_a_network("10.0.0.300/24").contains("`10.0.0.300` is not an IP address"));
        assert!(why_not_a_network("10.0.0.0/x").contains("must be a number from 0 to 32"));
    }

    #[test]
    fn organisation_names_normalise() {
        assert_eq!(normalize_org("ACME Corp."), "acme");
        assert_eq!(normalize_org("Acme Corporation"), "acme");
        assert_eq!(normalize_org("acme, inc"), "acme");
        assert_eq!(normalize_org("The Globex Company"), "globex");
        assert_eq!(
            normalize_org("Société Générale de Fret S.A."),
            "société générale de fret"
        );
        assert_eq!(normalize_org("Inc"), "inc", "a bare suffix stays");
    }

    #[test]
    fn account_files_parse_and_errors_point_at_the_line() {
        let text = "[account]\ndomain = \"Acme.Example\"\nname = \"Acme Corporation\"\naliases = [\"ACME Corp.\"]\n\
                    networks = [\"203.0.113.0/24\", \"2001:db8:ac::/48\"]\ncountry = \"us\"\nowner = \"Dana\"\n";
        let a = parse_account(Path::new("acme.toml"), text)
            .unwrap()
            .unwrap();
        assert_eq!(a.company.domain.as_deref(), Some("acme.example"));
        assert_eq!(a.company.country.as_deref(), Some("US"));
        assert_eq!(a.networks.len(), 2);
        assert!(a.company.account);

        let bad = "[account]\ndomain = \"acme.example\"\nname = \"Acme\"\nnetworks = [\"203.0.113.7/24\"]\n";
        let e = parse_account(Path::new("acme.toml"), bad)
            .unwrap_err()
            .remove(0);
        assert_eq!(e.location, Some((4, 13)), "{e}");
        assert!(
            e.to_string().contains("did you mean `203.0.113.0/24`"),
            "{e}"
        );
        assert!(e.to_string().starts_with("acme.toml:4:13:"), "{e}");

        let typo = "[account]\ndomain = \"acme.example\"\nname = \"Acme\"\nnetwork = []\n";
        let e = parse_account(Path::new("acme.toml"), typo)
            .unwrap_err()
            .remove(0);
        assert!(
            e.message
                .contains("`network` is not a key here; did you mean `networks`?"),
            "{e}"
        );
        assert_eq!(e.location.map(|l| l.0), Some(4), "{e}");

        assert!(
            parse_account(Path::new("segment.toml"), "[segment]\nx = 1\n")
                .unwrap()
                .is_none()
        );
        let e = parse_account(
            Path::new("a.toml"),
            "[account]\ndomain = \"nodot\"\nname = \"A\"\n",
        )
        .unwrap_err()
        .remove(0);
        assert_eq!(e.location, Some((2, 10)));
        // Every problem of the file in one pass.
        let many = "[account]\ndomain = \"nodot\"\nname = \"A\"\nnetworks = [\"10.0.0.0/33\", \"10.1.0.1/16\"]\ncountry = \"USA\"\nemployees = 50\n";
        let e = parse_account(Path::new("a.toml"), many).unwrap_err();
        let lines: Vec<usize> = e.iter().map(|e| e.location.unwrap().0).collect();
        assert_eq!(lines, [2, 4, 4, 5, 6], "{e:?}");
    }

    #[test]
    fn ranges_become_cidrs() {
        let r =
            range_to_networks("10.0.0.0".parse().unwrap(), "10.0.0.255".parse().unwrap()).unwrap();
        assert_eq!(r, vec!["10.0.0.0/24".parse::<IpNetwork>().unwrap()]);
        let r =
            range_to_networks("10.0.0.1".parse().unwrap(), "10.0.0.6".parse().unwrap()).unwrap();
        let text: Vec<String> = r.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            text,
            ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]
        );
        let all = range_to_networks(
            "0.0.0.0".parse().unwrap(),
            "255.255.255.255".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(all, vec!["0.0.0.0/0".parse::<IpNetwork>().unwrap()]);
        let v6 = range_to_networks(
            "::".parse().unwrap(),
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap(),
        );
        assert_eq!(v6.unwrap(), vec!["::/0".parse::<IpNetwork>().unwrap()]);
        assert!(
            range_to_networks("10.0.0.2".parse().unwrap(), "10.0.0.1".parse().unwrap()).is_none()
        );
        assert!(range_to_networks("10.0.0.2".parse().unwrap(), "::1".parse().unwrap()).is_none());
    }

    #[test]
    fn vendor_csv_and_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("companies.csv");
        std::fs::write(
            &csv,
            "network,domain,name,industry,employees,country,type\n\
             198.51.100.0/24,initech.example,\"Initech, Inc.\",Software,100-499,us,business\n\
             192.0.2.0/25,,Big Telco,,,,isp\n",
        )
        .unwrap();
        let rows = load_vendor_file(&csv).unwrap();
        assert_eq!(rows.len(), 2);
        match &rows[0].1 {
            VendorEntry::Company(c) => {
                assert_eq!(c.name, "Initech, Inc.");
                assert_eq!(c.country.as_deref(), Some("US"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&rows[1].1, VendorEntry::NotACompany { kind, .. } if kind == "isp"));

        let jsonl = dir.path().join("more.jsonl");
        std::fs::write(
            &jsonl,
            "{\"start_ip\":\"203.0.113.10\",\"end_ip\":\"203.0.113.13\",\"domain\":\"hooli.example\",\"name\":\"Hooli\"}\n\n",
        )
        .unwrap();
        let rows = load_vendor_file(&jsonl).unwrap();
        let nets: Vec<String> = rows.iter().map(|r| r.0.to_string()).collect();
        assert_eq!(nets, ["203.0.113.10/31", "203.0.113.12/31"]);

        std::fs::write(&csv, "network,name\n198.51.100.0/24,Ok\nnot-a-net,Bad\n").unwrap();
        let e = load_vendor_file(&csv).unwrap_err();
        assert_eq!(e.location, Some((3, 1)), "{e}");
        assert!(e.to_string().contains("not-a-net"), "{e}");
    }
}
