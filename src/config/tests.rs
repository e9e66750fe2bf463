use super::*;

fn ok(text: &str) -> Settings {
    Settings::from_toml(text, &Overrides::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn errs(text: &str) -> Vec<ConfigError> {
    Settings::from_toml(text, &Overrides::default())
        .expect_err("should fail")
        .0
}

#[test]
fn minimal_config_gets_defaults() {
    let s = ok("[upstream]\nurl = \"http://127.0.0.1:3000\"\n");
    assert_eq!(s.listeners.len(), 1);
    assert_eq!(s.listeners[0].address.to_string(), defaults::LISTEN);
    assert_eq!(s.upstream.authority.as_str(), "127.0.0.1:3000");
    assert_eq!(s.timeouts.upstream_connect, defaults::UPSTREAM_CONNECT);
    assert_eq!(
        s.admin.map(|a| a.to_string()).as_deref(),
        Some(defaults::ADMIN)
    );
    assert_eq!(s.upstream.host_header, HostHeader::Preserve);
}

#[test]
fn unknown_key_names_key_and_hints() {
    let e = errs("[upstream]\nurl = \"http://a:1\"\nhost_heder = \"upstream\"\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].message.contains("host_heder"), "{}", e[0].message);
    assert!(
        e[0].message.contains("did you mean `host_header`"),
        "{}",
        e[0].message
    );
    assert_eq!(e[0].key, "config:3:1", "{}", e[0]);
}

#[test]
fn all_errors_are_collected_with_keys() {
    let e = errs(
        "[[listener]]\naddress = \"nonsense\"\n[timeouts]\nclient_header = \"ten\"\n[log]\nformat = \"xml\"\n",
    );
    let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "listener[0].address",
            "upstream.url",
            "timeouts.client_header",
            "log.format"
        ]
    );
    // Plain words, not the duration parser's ("expected number at 0").
    assert_eq!(
        e[2].message,
        "`ten` is not a duration: a duration is a number followed by a unit; write e.g. \"500ms\", \"10s\", \"2m\", \"30days\""
    );
    let e = errs("[upstream]\nurl = \"http://a:1\"\n[consent]\nmax_age = \"13 months\"\n[timeouts]\nclient_header = \"10 secs\"\nupstream_connect = \"5 lightyears\"\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].message.contains("`lightyears` is not a unit of time"),
        "{e:?}"
    );
}

#[test]
fn overrides_win_over_file() {
    let ov = Overrides {
        listen: vec!["127.0.0.1:9999".into()],
        upstream: Some("https://origin.example:8443/base/".into()),
        ..Default::default()
    };
    let s = Settings::from_toml(
        "[upstream]\nurl = \"http://a:1\"\n[[listener]]\naddress = \"0.0.0.0:80\"\n",
        &ov,
    )
    .expect("valid");
    assert_eq!(s.listeners.len(), 1);
    assert_eq!(s.listeners[0].address.port(), 9999);
    assert_eq!(s.upstream.scheme, UpstreamScheme::Https);
    assert_eq!(s.upstream.authority.as_str(), "origin.example:8443");
    assert_eq!(s.upstream.base_path, "/base");
}

#[test]
fn bad_upstream_urls_are_rejected() {
    for u in [
        "ftp://a",
        "127.0.0.1:3000",
        "http://u:p@a:1",
        "http://a:1/?q=1",
        "not a url",
    ] {
        let e = errs(&format!("[upstream]\nurl = \"{u}\"\n"));
        assert_eq!(e[0].key, "upstream.url", "{u}: {e:?}");
    }
}

#[test]
fn redirect_only_on_plain_listeners() {
    let e = errs("[upstream]\nurl=\"http://a:1\"\n[[listener]]\naddress=\"127.0.0.1:1\"\ntls=true\nredirect_to_https=true\n");
    assert_eq!(e[0].key, "listener[0].redirect_to_https");
    let s = ok("[upstream]\nurl=\"http://a:1\"\n[[listener]]\naddress=\"127.0.0.1:1\"\nredirect_to_https=true\nhttps_port=8443\n");
    assert_eq!(s.listeners[0].redirect_to_https, Some(8443));
}

#[test]
fn host_header_modes() {
    let s = ok("[upstream]\nurl=\"http://a:1\"\nhost_header=\"upstream\"\n");
    assert_eq!(s.upstream.host_header, HostHeader::Upstream);
    let s = ok(
        "[upstream]\nurl=\"http://a:1\"\nhost_header=\"custom\"\ncustom_host=\"www.example.com\"\n",
    );
    assert!(matches!(s.upstream.host_header, HostHeader::Custom(_)));
    let e = errs("[upstream]\nurl=\"http://a:1\"\nhost_header=\"sometimes\"\n");
    assert_eq!(e[0].key, "upstream.host_header");
}

#[test]
fn request_id_header_cannot_be_a_managed_header() {
    for name in ["Host", "content-length", "X-Forwarded-For"] {
        let e = errs(&format!(
            "[upstream]\nurl=\"http://a:1\"\n[proxy]\nrequest_id_header=\"{name}\"\n"
        ));
        assert_eq!(e[0].key, "proxy.request_id_header", "{name}");
    }
    let s = ok("[upstream]\nurl=\"http://a:1\"\n[proxy]\nrequest_id_header=\"X-Correlation-Id\"\n");
    assert_eq!(s.proxy.request_id_header.as_str(), "x-correlation-id");
    assert!(
        !s.proxy.trust_request_id,
        "ids from the internet are not trusted by default"
    );
}

#[test]
fn client_ip_settings() {
    let s = ok("[upstream]\nurl=\"http://a:1\"\n[client_ip]\ntrusted_proxies=[\"10.0.0.0/8\", \"2001:db8::/32\", \"127.0.0.1\"]\nheader=\"forwarded\"\n[[listener]]\naddress=\"127.0.0.1:1\"\nproxy_protocol=true\n");
    assert!(s
        .client_ip
        .trusted_proxies
        .contains("10.1.2.3".parse().unwrap()));
    assert!(s
        .client_ip
        .trusted_proxies
        .contains("127.0.0.1".parse().unwrap()));
    assert!(!s
        .client_ip
        .trusted_proxies
        .contains("127.0.0.2".parse().unwrap()));
    assert_eq!(
        s.client_ip.header,
        crate::client_ip::ForwardingHeader::Forwarded
    );
    assert!(s.listeners[0].proxy_protocol);
    let e = errs(
        "[upstream]\nurl=\"http://a:1\"\n[client_ip]\ntrusted_proxies=[\"10.0.0.1/8\", \"nope\"]\n",
    );
    assert_eq!(e[0].key, "client_ip.trusted_proxies[0]");
    assert!(e[0].message.contains("10.0.0.0/8"), "{}", e[0].message);
    assert_eq!(e[1].key, "client_ip.trusted_proxies[1]");
    let e = errs("[upstream]\nurl=\"http://a:1\"\n[[listener]]\naddress=\"127.0.0.1:1\"\nproxy_protocol=true\n");
    assert_eq!(e[0].key, "listener[0].proxy_protocol");
}

#[test]
fn duplicate_listener_is_an_error() {
    let e = errs("[upstream]\nurl=\"http://a:1\"\n[[listener]]\naddress=\"127.0.0.1:1\"\n[[listener]]\naddress=\"127.0.0.1:1\"\n");
    assert_eq!(e[0].key, "listener[1].address");
}

#[test]
fn example_config_is_valid_and_documents_every_section() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("concierge.example.toml");
    let s = Settings::load(Some(&path), &Overrides::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.listeners.len(), 2);
    assert!(s.listeners[1].tls);
    assert_eq!(
        s.tls.certs_dir,
        Path::new(env!("CARGO_MANIFEST_DIR")).join("certs")
    );
    let text = std::fs::read_to_string(&path).expect("read");
    for section in [
        "[upstream]",
        "[tls]",
        "[limits]",
        "[timeouts]",
        "[admin]",
        "[log]",
        "[proxy]",
        "[rules]",
        "[runtime]",
        "[consent]",
        "[audit]",
        "[[geo.static]]",
    ] {
        assert!(text.contains(section), "{section} missing from the example");
    }
}

#[test]
fn consent_policy_keys() {
    let s = ok("[upstream]\nurl = \"http://a:1\"\n");
    let p = &s.consent.policy;
    assert!(p.opt_in_countries.contains("DE") && p.opt_in_countries.contains("CH"));
    assert!(p.opt_out_regions.contains("US-CA"));
    assert_eq!(p.max_age_seconds, 395 * 86_400);
    assert_eq!(s.audit.dir, Path::new("audit"));
    let s = ok("[upstream]\nurl = \"http://a:1\"\n[consent]\nopt_in_countries = [\"eea\", \"GB\"]\n\
         opt_out_regions = [\"US-PRIVACY-STATES\", \"CA-QC\"]\nother_regions = \"opt-out\"\n\
         firmographic_purposes = [6, 5, 5]\ndnt = \"opt-out\"\nmax_age = \"180days\"\n\
         cookie_name = \"my_consent\"\nbanner_version = \"2026-11\"\ngpc_well_known = true\n\
         gpc_last_update = \"2026-11-24\"\n[[geo.static]]\nnetwork = \"10.0.0.0/8\"\ncountry = \"de\"\n");
    let p = &s.consent.policy;
    assert!(!p.opt_in_countries.contains("CH") && p.opt_in_countries.contains("NO"));
    assert!(p.opt_out_regions.contains("CA-QC") && p.opt_out_regions.contains("US-TX"));
    assert_eq!(p.other_regions, crate::consent::policy::Regime::OptOut);
    assert_eq!(p.firmographic_purposes, [5, 6]);
    assert!(p.dnt_is_opt_out);
    assert_eq!(p.max_age_seconds, 180 * 86_400);
    assert_eq!(s.consent.names.first_party_cookie, "my_consent");
    assert_eq!(s.consent.banner_version, "2026-11");
    assert_eq!(s.consent.gpc_last_update.as_deref(), Some("2026-11-24"));
    assert_eq!(
        s.firmographics.geo_static[0].1.country.as_deref(),
        Some("DE")
    );

    let e = errs("[upstream]\nurl = \"http://a:1\"\n[consent]\nopt_in_countries = [\"Germany\"]\n\
         opt_out_regions = [\"California\"]\nother_regions = \"maybe\"\npersonal_purposes = [12]\n\
         firmographic_purposes = []\ndnt = \"ignore\"\nmax_age = \"0s\"\ncookie_name = \"a b\"\n\
         banner_version = \"\"\ngpc_last_update = \"24.11.2026\"\n[[geo.static]]\nnetwork = \"10.0.0.0/33\"\n\
         country = \"DE\"\n[[geo.static]]\nnetwork = \"10.0.0.0/8\"\n");
    let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "geo.static[0].network",
            "geo.static[1].country",
            "consent.opt_in_countries[0]",
            "consent.opt_out_regions[0]",
            "consent.other_regions",
            "consent.firmographic_purposes",
            "consent.personal_purposes[0]",
            "consent.dnt",
            "consent.max_age",
            "consent.cookie_name",
            "consent.banner_version",
            "consent.gpc_last_update",
        ]
    );
}

#[test]
fn edit_distance_works() {
    use crate::hint::edit_distance;
    assert_eq!(edit_distance("kitten", "sitting"), 3);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(edit_distance("same", "same"), 0);
}

#[test]
fn geo_static_errors_echo_values_as_written() {
    let e = errs(
        "[upstream]\nurl = \"http://127.0.0.1:3000\"\n[[geo.static]]\nnetwork = \"10.0.0.0/8\"\ncountry = \"Germany\"\n",
    );
    assert!(
        e.iter().any(|e| e
            .message
            .contains("`Germany` is not an ISO 3166-1 alpha-2 country code")),
        "{e:?}"
    );
}
