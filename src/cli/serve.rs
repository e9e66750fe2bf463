//! `concierge serve`, `check` and `demo`: running the proxy, validating what it would load, the built-in demo.

use std::process::ExitCode;

use super::*;

pub(super) fn serve(args: ServeArgs) -> ExitCode {
    let settings = match args.load() {
        Ok(s) => s,
        Err(e) => {
            print_config_errors(&e);
            return ExitCode::from(2);
        }
    };
    app::init_logging(&settings.log);
    match app::run(settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "concierge stopped");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub(super) fn check(args: ServeArgs) -> ExitCode {
    // A marketer checking a rules folder has no origin: without upstream.url everything else is still checked.
    let (settings, no_upstream) = match args.load() {
        Ok(s) => (s, false),
        Err(e) if args.upstream.is_none() && e.0.iter().all(|e| e.key == "upstream.url") => {
            let mut overrides = args.overrides();
            overrides.upstream = Some("http://127.0.0.1:9".into());
            match Settings::load(args.config.as_deref(), &overrides) {
                Ok(s) => (s, true),
                Err(e) => {
                    print_config_errors(&e);
                    return ExitCode::FAILURE;
                }
            }
        }
        Err(e) => {
            print_config_errors(&e);
            return ExitCode::FAILURE;
        }
    };
    let mut problems: Vec<String> = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    for l in &settings.listeners {
        let kind = if l.tls { "https" } else { "http" };
        let h2 = if l.http2 {
            "HTTP/1.1 + HTTP/2"
        } else {
            "HTTP/1.1"
        };
        let redirect = l
            .redirect_to_https
            .map(|p| format!(", redirects to https port {p}"))
            .unwrap_or_default();
        lines.push(format!("listener  {} ({kind}, {h2}{redirect})", l.address));
    }
    if no_upstream {
        lines.push(
            "upstream  not configured (serve needs upstream.url or --upstream; everything else is checked)"
                .into(),
        );
    } else {
        lines.push(format!(
            "upstream  {} (Host: {})",
            settings.upstream.url, settings.upstream.host_header
        ));
    }
    let mut consent = settings.consent.clone();
    if let Err(e) = consent.load_keys(&settings.audit.dir, false) {
        problems.push(format!("consent.cookie_key: {e}"));
    }
    if settings.listeners.iter().any(|l| l.tls) {
        match crate::tls::load_store(&settings.tls) {
            Ok(store) => {
                for c in &store.entries {
                    lines.push(format!(
                        "certificate {} (key {}) for {}",
                        c.cert.display(),
                        c.key.display(),
                        c.names.join(", ")
                    ));
                }
            }
            Err(e) => problems.push(format!("tls: {e}")),
        }
    }
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(_) if no_upstream => {}
        Ok(rt) => {
            let result = rt.block_on(async {
                crate::proxy::upstream::Upstream::new(&settings.upstream, &settings.timeouts)
                    .map(|_| ())
            });
            if let Err(e) = result {
                problems.push(e.to_string());
            }
        }
        Err(e) => problems.push(format!("cannot start a runtime: {e}")),
    }
    match crate::rules::RuleSet::load(&settings.rules_dir) {
        Ok(r) => {
            lines.push(format!(
                "rules     {} personalizations in {} (version {})",
                r.personalizations.len(),
                settings.rules_dir.display(),
                r.version
            ));
            for c in &r.conflicts {
                lines.push(format!(
                    "conflict  `{}` ({}): {} wins over {}",
                    c.selector, c.slot, c.winner, c.loser
                ));
            }
            match crate::experiments::load(&settings.rules_dir, &r) {
                Ok(set) => {
                    for e in &set.experiments {
                        lines.push(format!(
                            "experiment {}: {:.0}% control, governs {}; goals {}",
                            e.id,
                            e.control * 100.0,
                            e.rules.join(", "),
                            e.goals
                                .iter()
                                .map(|g| g.id.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                }
                Err(errors) => problems.extend(errors.iter().map(|e| e.to_string())),
            }
        }
        Err(errors) => problems.extend(errors.iter().map(|e| e.to_string())),
    }
    match crate::firmographics::Firmographics::load(&settings.firmographics, &settings.rules_dir) {
        Ok(f) => {
            lines.push(format!(
                "accounts  {} in {}",
                f.accounts().len(),
                settings.rules_dir.join("accounts").display()
            ));
            let fs = &settings.firmographics;
            for file in &fs.files {
                lines.push(format!("vendor    {}", file.display()));
            }
            for db in &fs.company_dbs {
                lines.push(format!(
                    "mmdb      {} (organization: {})",
                    db.path.display(),
                    db.organization
                ));
            }
            for (what, db) in [
                ("geo", &fs.geo_db),
                ("anonymous", &fs.anonymous_ip_db),
                ("connection", &fs.connection_type_db),
            ] {
                if let Some(p) = db {
                    lines.push(format!("{what:<9} {}", p.display()));
                }
            }
        }
        Err(errors) => problems.extend(errors.iter().map(|e| e.to_string())),
    }
    match settings.admin {
        Some(a) => lines.push(format!("admin     {a} (/healthz, /readyz, /metrics)")),
        None => lines.push("admin     off".into()),
    }
    if problems.is_empty() {
        let source = settings
            .source
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or("flags only".into());
        outln!("configuration OK ({source})");
        for l in lines {
            outln!("  {l}");
        }
        ExitCode::SUCCESS
    } else {
        for p in &problems {
            eprintln!("error: {p}");
        }
        eprintln!("{} error(s)", problems.len());
        ExitCode::FAILURE
    }
}

pub(super) fn demo(args: DemoArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<()> = rt.block_on(async move {
        let origin = crate::demo::start_origin(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let audit_dir = std::env::temp_dir().join(format!("concierge-demo-{}", std::process::id()));
        std::fs::create_dir_all(&audit_dir)?;
        // The built-in rules, written out so they can be read and edited; or the marketer's own folder.
        let rules_dir = match &args.rules {
            Some(dir) => {
                if !dir.is_dir() {
                    let _ = std::fs::remove_dir_all(&audit_dir);
                    anyhow::bail!("--rules {}: no such folder", dir.display());
                }
                std::fs::canonicalize(dir)?
            }
            None => {
                let dir = audit_dir.join("rules");
                crate::demo::write_rules(&dir)?;
                dir
            }
        };
        let overrides = Overrides {
            listen: vec![args.listen.to_string()],
            upstream: Some(format!("http://{origin}")),
            rules: Some(rules_dir.clone()),
            log_format: args.log_format.map(Into::into),
            admin: Some(args.admin.clone()),
        };
        let key_path = audit_dir.join("demo-signing.key");
        crate::audit::keys::create(&key_path)?;
        // The console on the admin listener, with a token made for this run (printed below).
        let console = if args.admin == "off" {
            None
        } else {
            Some(crate::demo::console_toml(&audit_dir.join("console.token"))?)
        };
        let console_section = console.as_ref().map(|(_, t)| t.as_str()).unwrap_or("");
        let settings = Settings::from_toml(
            &format!(
                "{}{console_section}",
                crate::demo::settings_toml(&audit_dir.join("log"), &key_path)
            ),
            &overrides,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        app::init_logging(&settings.log);
        let server = match app::Server::start(settings).await {
            Ok(s) => s,
            Err(e) => {
                // Nothing of a demo that did not start stays behind (its keys included).
                let _ = std::fs::remove_dir_all(&audit_dir);
                return Err(anyhow::anyhow!("{e}\nhint: another program uses that port; pick others with --listen ADDR --admin ADDR|off"));
            }
        };
        let proxy_addr = server.listeners.first().copied().unwrap_or(args.listen);
        let config_path = audit_dir.join("concierge.toml");
        std::fs::write(
            &config_path,
            crate::demo::effective_toml(
                proxy_addr,
                origin,
                server.admin,
                &rules_dir,
                &audit_dir.join("log"),
                &key_path,
            ) + console_section,
        )?;
        outln!("{}", crate::demo::banner(proxy_addr, origin, server.admin));
        if let (Some((token, _)), Some(a)) = (&console, server.admin) {
            outln!("Console (marketers and reviewers): http://{a}/console/\n  your browser asks for a user name (any) and a password: {token}\n  or: curl -s -H 'Authorization: Bearer {token}' http://{a}/console/rules\n");
        }
        let mut personas = String::from("Visit as a persona (demo-only ports; the proxy sees the persona's address):\n");
        for (name, ip) in crate::demo::PERSONAS {
            let from: std::net::IpAddr = ip.parse()?;
            let port = crate::demo::start_persona(from, proxy_addr).await?;
            personas.push_str(&format!("  http://{port}/   {name}, as {ip}\n"));
        }
        outln!("{personas}");
        let config = config_path.display();
        outln!(
            "Rules: {rules} ({how})\nEffective configuration: {config}\n  concierge explain --config {config} --ip 127.0.10.5 --url /   # what Acme's browser gets, rule by rule\n  concierge lookup --config {config} 127.0.10.5 127.0.20.5 127.0.0.1\n  concierge consent decide --config {config} --ip 127.0.0.1   # Germany: the banner asks\n",
            rules = rules_dir.display(),
            how = if args.rules.is_some() {
                "yours; edits are live within a second"
            } else {
                "the built-in demo rules, written out; run `concierge demo --rules DIR` on your own"
            },
        );
        outln!(
            "Audit log (consent, decision and experiment records, feedback): {log}\n  check it: concierge audit verify {log} --public-key {pubkey}\n  feedback: concierge feedback report {log}\n  experiment (rules/experiments/logistics-subheadline.toml): Globex (127.0.20.x) is a logistics account;\n    curl -s --interface 127.0.20.5 http://{proxy}/ -H 'Accept: text/html' -o /dev/null   # an exposure\n    curl -s --interface 127.0.20.5 http://{proxy}/demo-request -d name=Jo -o /dev/null   # a conversion\n    concierge experiments report {log}\n",
            proxy = proxy_addr,
            log = audit_dir.join("log").display(),
            pubkey = crate::audit::keys::public_path(&key_path).display()
        );
        outln!("Press Ctrl-C to stop.");
        app::wait_for_stop(&server).await?;
        app::stop(server).await;
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
