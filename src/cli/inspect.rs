//! The operator's and marketer's inspection commands: `lookup`, `explain`, `consent decide|decode|keygen`.

use std::process::ExitCode;

use super::*;

pub(super) fn lookup(args: LookupArgs) -> ExitCode {
    use crate::firmographics::NoCompany;

    let mut ips = Vec::new();
    for text in &args.ips {
        match text.parse::<std::net::IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => {
                eprintln!("error: `{text}` is not an IP address");
                return ExitCode::from(2);
            }
        }
    }
    let f = match load_sources(args.config.as_deref(), args.rules.clone()) {
        Ok((_, f)) => f,
        Err(code) => return code,
    };
    if args.json {
        let out: Vec<serde_json::Value> = ips
            .iter()
            .map(|ip| {
                let (company, reason) = match f.company(*ip, LookupPermit::operator()) {
                    Ok(m) => (serde_json::to_value(&m).ok(), None),
                    Err(r) => (None, serde_json::to_value(&r).ok()),
                };
                serde_json::json!({
                    "ip": ip.to_string(),
                    "company": company,
                    "no_company": reason,
                    "geo": f.geo(*ip),
                })
            })
            .collect();
        match serde_json::to_string_pretty(&out) {
            Ok(text) => outln!("{text}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
        return ExitCode::SUCCESS;
    }
    for ip in ips {
        outln!("{ip}");
        match f.company(ip, LookupPermit::operator()) {
            Ok(m) => {
                let c = &m.company;
                let domain = c
                    .domain
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default();
                let source = match &m.source {
                    crate::firmographics::MatchSource::Account { file } => {
                        format!("account file {}", file.display())
                    }
                    crate::firmographics::MatchSource::Vendor { file } => {
                        format!("vendor file {}", file.display())
                    }
                    crate::firmographics::MatchSource::Mmdb {
                        file,
                        organization,
                        via_alias,
                    } => {
                        let alias = if *via_alias {
                            ", matched to the account by its aliases"
                        } else {
                            ""
                        };
                        format!(
                            "{} (organization \"{organization}\"{alias})",
                            file.display()
                        )
                    }
                };
                let network = m
                    .network
                    .map(|n| format!(", network {n}"))
                    .unwrap_or_default();
                outln!("  company  {}{domain} — {source}{network}", c.name);
                let mut attrs = Vec::new();
                if c.account {
                    attrs.push("target account".to_string());
                }
                for (k, v) in [
                    ("industry", &c.industry),
                    ("employees", &c.employees),
                    ("country", &c.country),
                    ("owner", &c.owner),
                ] {
                    if let Some(v) = v {
                        attrs.push(format!("{k} {v}"));
                    }
                }
                if !attrs.is_empty() {
                    outln!("           {}", attrs.join(" · "));
                }
            }
            Err(reason) => {
                let why = match reason {
                    NoCompany::NoMatch => "no source knows this address".to_string(),
                    NoCompany::NotACompany { kind, name, source } => {
                        format!(
                            "{kind} network{} (per {})",
                            if name.is_empty() {
                                String::new()
                            } else {
                                format!(" of {name}")
                            },
                            source.display()
                        )
                    }
                    NoCompany::Anonymizer { flag } => format!("anonymizer ({flag})"),
                    NoCompany::Mobile => "mobile (cellular) connection".to_string(),
                    NoCompany::DenyListed { organization } => {
                        format!("{organization} is on the deny list")
                    }
                };
                outln!("  company  none: {why}");
            }
        }
        let geo = f.geo(ip);
        match (geo.country, geo.subdivision) {
            (None, _) => outln!("  geo      unknown"),
            (Some(c), None) => outln!("  geo      {c}"),
            (Some(c), Some(s)) => outln!("  geo      {c}, {s}"),
        }
    }
    ExitCode::SUCCESS
}

pub(super) fn explain(args: ExplainArgs) -> ExitCode {
    let Ok(ip) = args.ip.parse::<std::net::IpAddr>() else {
        eprintln!("error: --ip `{}` is not an IP address", args.ip);
        return ExitCode::from(2);
    };
    let Ok(uri) = args.url.parse::<http::Uri>() else {
        eprintln!("error: --url `{}` is not a URL or path", args.url);
        return ExitCode::from(2);
    };
    let headers = match request_headers(&args.headers, &args.cookies) {
        Ok(h) => h,
        Err(code) => return code,
    };
    let html = match &args.html {
        Some(p) => match std::fs::read(p) {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("error: --html {}: {e}", p.display());
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let (settings, f) = match load_sources(args.config.as_deref(), args.rules.clone()) {
        Ok(pair) => pair,
        Err(code) => return code,
    };
    let rules = match crate::rules::RuleSet::load(&settings.rules_dir) {
        Ok(r) => r,
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            eprintln!("{} error(s) in the rule files", errors.len());
            return ExitCode::FAILURE;
        }
    };
    let experiments = match crate::experiments::load(&settings.rules_dir, &rules) {
        Ok(e) => e,
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            eprintln!("{} error(s) in the experiment files", errors.len());
            return ExitCode::FAILURE;
        }
    };
    // The page decided exactly as the proxy decides it: one generation of sources, the same pipeline
    // (`preview::run`, which the console's preview calls too).
    let sources = crate::sources::Sources {
        generation: 1,
        firmographics: std::sync::Arc::new(f),
        rules: std::sync::Arc::new(rules),
        experiments: std::sync::Arc::new(experiments),
    };
    let consent = match args.consent {
        super::ConsentChoice::Accept => crate::preview::Consent::Accept,
        super::ConsentChoice::Reject => crate::preview::Consent::Reject,
        super::ConsentChoice::None => crate::preview::Consent::None,
    };
    let input = crate::preview::Input {
        ip,
        url: &args.url,
        headers,
        consent,
        html: html.as_deref(),
        charset: None,
        request_id: "explain",
    };
    let json = args.json;
    let url = args.url.clone();
    match crate::preview::run(input, &sources, &settings, |o| {
        print_explanation(o, ip, &url, uri.path(), json)
    }) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// `explain`'s output: JSON, or text (to stderr when the page goes to stdout).
fn print_explanation(
    o: &crate::preview::Outcome<'_, '_>,
    ip: std::net::IpAddr,
    url: &str,
    path: &str,
    json: bool,
) -> ExitCode {
    use crate::classify::Lookup;

    let (view, settings, decided) = (o.view, o.settings, &o.decided);
    let (c, plan) = (&decided.classification, &decided.plan);
    let page = crate::pipeline::page(settings, c, view.accept_language());
    let additions = crate::rewrite::Additions::of(plan, &page);
    let describe = |p: &crate::rules::Personalization, a: &crate::rules::Action| {
        decided.describe(view, settings, p, a)
    };
    let record = &o.record;
    let warnings = &o.warnings;
    if json {
        let mut out = decided.explain(view, settings, ip, url, record.clone());
        if let Some((html, error)) = &o.rewritten {
            out.html = Some(String::from_utf8_lossy(html).into_owned());
            out.rewrite_error = Some(error.clone());
        }
        out.warnings = warnings.clone();
        return match serde_json::to_string_pretty(&out) {
            Ok(t) => {
                outln!("{t}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // With --html, the page goes to stdout and the explanation to stderr, so the page can be redirected.
    let mut text = Vec::new();
    let d = &c.decision;
    text.push(format!(
        "visitor    {ip} {} — {}",
        match (&c.geo.country, &c.geo.subdivision) {
            (Some(cc), Some(sub)) => format!("{cc}-{sub}"),
            (Some(cc), None) => cc.clone(),
            _ => "location unknown".into(),
        },
        match &c.company {
            Lookup::NotRun => "company lookup not run (firmographic not permitted)".to_string(),
            Lookup::NotNeeded => {
                "company lookup not needed (no firmographic rule or experiment goal on this page)"
                    .to_string()
            }
            Lookup::Matched(m) => format!(
                "company {}{}",
                m.company.name,
                m.company
                    .domain
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ),
            Lookup::NoCompany(_) => "no company".to_string(),
        }
    ));
    let tiers: Vec<&str> = d.permitted.iter().map(|t| t.name()).collect();
    text.push(format!(
        "consent    {} ({}): permitted {}{}",
        d.jurisdiction.region,
        d.jurisdiction.regime.name(),
        tiers.join(", "),
        if d.show_banner { "; banner shown" } else { "" }
    ));
    text.push(format!("           reasons: {}", d.reasons.join(", ")));
    text.push(format!("rules      version {}", plan.rules_version));
    for (p, v) in &plan.verdicts {
        let (what, why) = v.label();
        text.push(format!(
            "  {what:<14} {:<36} {}",
            p.id,
            if why.is_empty() {
                format!("({:?}, {:?})", p.scale, p.tier).to_lowercase()
            } else {
                why.to_string()
            }
        ));
    }
    for a in &decided.experiments.assignments {
        text.push(format!(
            "experiment {}: {} arm — {}",
            a.experiment,
            a.arm.name(),
            a.why()
        ));
    }
    if let Some(why) = decided.experiments.excluded {
        text.push(format!(
            "experiment not taking part ({}): governed rules apply as written, nothing is recorded",
            why.replace('_', " ")
        ));
    }
    text.push("plan".into());
    if decided.ops.is_empty() {
        text.push("  nothing to change".into());
    }
    for (p, a) in &plan.actions {
        let (what, value) = describe(p, a);
        text.push(format!(
            "  {:<24} {what:<22} {value:?}  [{}]",
            a.selector, p.id
        ));
    }
    if additions.banner {
        text.push("  + the consent banner (end of <head>)".into());
    }
    for p in &additions.prompts {
        if let Some(f) = &p.feedback {
            text.push(format!(
                "  + feedback prompt {:?}{} (start of <body>)  [{}]",
                f.question,
                if f.comment {
                    " with a comment field"
                } else {
                    ""
                },
                p.id
            ));
        }
    }
    if additions.why_link {
        text.push(format!(
            "  + \"Why am I seeing this?\" link to {} (end of <body>)",
            crate::feedback::why_href(page.prefix, path)
        ));
    }
    match &record {
        Some(r) => text.push(format!(
            "record     {}  (for a 200 text/html response)",
            serde_json::to_string(&crate::audit::Record::Decision(Box::new(r.clone())))
                .unwrap_or_default()
        )),
        None => text.push("record     none (no lookup ran and nothing to change)".into()),
    }
    for w in warnings {
        text.push(format!("warning    {w}"));
    }
    match &o.rewritten {
        Some((html, error)) => {
            for line in &text {
                eprintln!("{line}");
            }
            if let Some(e) = error {
                eprintln!("rewrite    gave up ({e}); the rest of the page is unchanged");
            }
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            if stdout
                .write_all(html)
                .and_then(|()| stdout.flush())
                .is_err()
            {
                return ExitCode::SUCCESS;
            }
        }
        None => {
            for line in &text {
                outln!("{line}");
            }
        }
    }
    ExitCode::SUCCESS
}

pub(super) fn consent_decide(args: DecideArgs) -> ExitCode {
    use crate::classify::Lookup;

    let Ok(ip) = args.ip.parse::<std::net::IpAddr>() else {
        eprintln!("error: --ip `{}` is not an IP address", args.ip);
        return ExitCode::from(2);
    };
    let headers = match request_headers(&args.headers, &args.cookies) {
        Ok(h) => h,
        Err(code) => return code,
    };
    let now = match &args.at {
        None => crate::classify::unix_now(),
        Some(t) => match humantime::parse_rfc3339_weak(t) {
            Ok(time) => time
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            Err(e) => {
                eprintln!("error: --at `{t}` is not an RFC 3339 time ({e})");
                return ExitCode::from(2);
            }
        },
    };
    let (settings, f) = match load_sources(args.config.as_deref(), args.rules.clone()) {
        Ok(pair) => pair,
        Err(code) => return code,
    };
    // Decided by the pipeline the proxy uses, over the company and location tables (no rules: this answers
    // for the consent decision and the lookup, not for a page).
    let sources = crate::sources::Sources {
        generation: 1,
        firmographics: std::sync::Arc::new(f),
        rules: std::sync::Arc::default(),
        experiments: std::sync::Arc::default(),
    };
    let view = crate::pipeline::RequestView {
        method: &http::Method::GET,
        request_id: "consent-decide",
        path: "/",
        query: args.query.as_deref(),
        headers: &headers,
        client: ip,
        secure: args.https,
        now,
        visitor_id: None,
    };
    // Not for a page: the lookup runs wherever consent permits it (the proxy also asks whether the page could
    // use the company; `explain --url` answers for a page).
    let c = crate::pipeline::classify_needing(&view, &sources, &settings, true);
    if args.json {
        let out = serde_json::json!({
            "ip": ip.to_string(),
            "geo": c.geo,
            "decision": c.decision,
            "company": c.company,
        });
        return match serde_json::to_string_pretty(&out) {
            Ok(text) => {
                outln!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let d = &c.decision;
    let tiers: Vec<&str> = d.permitted.iter().map(|t| t.name()).collect();
    outln!("{ip}");
    outln!(
        "  location:       {}",
        match (&c.geo.country, &c.geo.subdivision) {
            (Some(cc), Some(sub)) => format!("{cc}-{sub}"),
            (Some(cc), None) => cc.clone(),
            _ => "unknown (no geo data for this address)".into(),
        }
    );
    outln!(
        "  jurisdiction:   {} ({})",
        d.jurisdiction.region,
        d.jurisdiction.regime.name()
    );
    outln!("  permitted:      {}", tiers.join(", "));
    outln!(
        "  banner:         {}",
        if d.show_banner {
            "shown (opt-in region, no decisive signal)"
        } else {
            "not shown"
        }
    );
    let company = match &c.company {
        Lookup::NotRun => "lookup not run (the firmographic tier is not permitted)".to_string(),
        Lookup::NotNeeded => {
            "lookup not needed (no rule of the firmographic or personal tier, and no experiment goal, on this page)"
                .to_string()
        }
        Lookup::Matched(m) => format!(
            "{}{}",
            m.company.name,
            m.company
                .domain
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        ),
        Lookup::NoCompany(n) => format!(
            "none ({})",
            serde_json::to_value(n)
                .ok()
                .and_then(|v| v.get("reason").and_then(|r| r.as_str().map(str::to_string)))
                .unwrap_or_default()
        ),
    };
    outln!("  company:        {company}");
    outln!("  reasons:");
    for r in &d.reasons {
        outln!("    {r}");
    }
    ExitCode::SUCCESS
}

pub(super) fn consent_decode(string: &str, json: bool) -> ExitCode {
    use crate::consent::{gpp, tcf, usp};
    let s = string.trim();
    let decoded: Result<(&str, serde_json::Value), String> = if s.len() == 4 && s.starts_with('1') {
        usp::decode(s)
            .map(|u| ("US Privacy", serde_json::to_value(u).unwrap_or_default()))
            .map_err(|e| e.to_string())
    } else if s.starts_with('D') {
        gpp::decode(s)
            .map(|g| ("GPP", serde_json::to_value(g).unwrap_or_default()))
            .map_err(|e| e.to_string())
    } else {
        tcf::decode(s)
            .map(|t| {
                let mut v = serde_json::to_value(&t).unwrap_or_default();
                if let Some(obj) = v.as_object_mut() {
                    obj.insert(
                        "violations".into(),
                        serde_json::to_value(t.violations()).unwrap_or_default(),
                    );
                }
                ("TCF v2 TC string", v)
            })
            .map_err(|e| e.to_string())
    };
    match decoded {
        Err(reason) => {
            eprintln!("error: {reason}");
            ExitCode::from(2)
        }
        Ok((_, value)) if json => {
            outln!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Ok((kind, value)) => {
            outln!("{kind}");
            print_value(&value, 1);
            ExitCode::SUCCESS
        }
    }
}

/// What a GPP US section's 0/1/2 field value means (IAB GPP US National and state sections).
fn gpp_meaning(field: &str, value: Option<u64>) -> Option<&'static str> {
    let v = value?;
    let words = if field.ends_with("OptOut") {
        ["not applicable", "opted out", "did not opt out"]
    } else if field.ends_with("Notice") {
        ["not applicable", "notice given", "no notice given"]
    } else if field.ends_with("Consents") || field.ends_with("Consent") {
        ["not applicable", "no consent", "consent"]
    } else if field.starts_with("Mspa") {
        ["not applicable", "yes", "no"]
    } else {
        return None;
    };
    words.get(usize::try_from(v).ok()?).copied()
}

/// Indented `key: value` lines for a decoded signal; id sets on one line.
fn print_value(v: &serde_json::Value, depth: usize) {
    let pad = "  ".repeat(depth);
    if let serde_json::Value::Object(map) = v {
        for (k, v) in map {
            match v {
                serde_json::Value::Object(_) => {
                    outln!("{pad}{k}:");
                    print_value(v, depth + 1);
                }
                serde_json::Value::Array(items) if items.iter().any(|i| i.is_object()) => {
                    outln!("{pad}{k}:");
                    for item in items {
                        print_value(item, depth + 1);
                        outln!();
                    }
                }
                serde_json::Value::Array(items) => {
                    let list: Vec<String> = items.iter().map(|i| i.to_string()).collect();
                    outln!("{pad}{k}: [{}]", list.join(", "));
                }
                serde_json::Value::String(s) => outln!("{pad}{k}: {s}"),
                serde_json::Value::Null => outln!("{pad}{k}: (not decoded)"),
                serde_json::Value::Number(n) => match gpp_meaning(k, n.as_u64()) {
                    Some(words) => outln!("{pad}{k}: {n} ({words})"),
                    None => outln!("{pad}{k}: {n}"),
                },
                other => outln!("{pad}{k}: {other}"),
            }
        }
    }
}

pub(super) fn consent_keygen(out: &std::path::Path, force: bool) -> ExitCode {
    if out.exists() && !force {
        eprintln!(
            "error: {} exists; pass --force to replace it (cookies it signed stop verifying unless it goes to consent.cookie_previous_keys)",
            out.display()
        );
        return ExitCode::from(2);
    }
    match crate::consent::first_party::CookieKey::create(out) {
        Ok(key) => {
            outln!(
                "cookie key {} written to {} (set consent.cookie_key to it)",
                key.id(),
                out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
