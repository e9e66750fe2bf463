//! The words of the consent banner, its `<noscript>` link, the choices page and the feedback prompt's own
//! controls (the question is the rule's), per language.
//!
//! English and German ship as defaults; `[consent.texts.<language>]` overrides any of their texts or adds a
//! language (which must then give every text). Each visitor gets the language their `Accept-Language` prefers
//! among those configured, else `consent.default_language`. Texts are plain text: whatever an operator writes
//! is escaped where it is inserted, and the few `{placeholders}` are filled by the proxy.

use std::collections::BTreeMap;

/// One text of the catalog. The order is `KEYS`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    Title,
    BannerText,
    Accept,
    Reject,
    Choose,
    Save,
    Legend,
    AlwaysOn,
    Firmographic,
    FirmographicText,
    Personal,
    PersonalText,
    More,
    Why,
    Policy,
    Saved,
    Noscript,
    PageIntro,
    PageIntroOptOut,
    PageNoChoice,
    PageNotObjected,
    PageCurrent,
    Allowed,
    NotAllowed,
    PageGpc,
    Back,
    FeedbackYes,
    FeedbackNo,
    FeedbackDismiss,
    FeedbackComment,
    FeedbackSend,
    FeedbackThanks,
    FeedbackFailed,
}

/// The configuration names of the texts, in `Key` order.
pub(crate) const KEYS: &[&str] = &[
    "title",
    "banner_text",
    "accept",
    "reject",
    "choose",
    "save",
    "legend",
    "always_on",
    "firmographic",
    "firmographic_text",
    "personal",
    "personal_text",
    "more",
    "why",
    "policy",
    "saved",
    "noscript",
    "page_intro",
    "page_intro_opt_out",
    "page_no_choice",
    "page_not_objected",
    "page_current",
    "allowed",
    "not_allowed",
    "page_gpc",
    "back",
    "feedback_yes",
    "feedback_no",
    "feedback_dismiss",
    "feedback_comment",
    "feedback_send",
    "feedback_thanks",
    "feedback_failed",
];

const N: usize = KEYS.len();

/// The texts the feedback prompt's script shows.
const FEEDBACK_KEYS: [Key; 7] = [
    Key::FeedbackYes,
    Key::FeedbackNo,
    Key::FeedbackDismiss,
    Key::FeedbackComment,
    Key::FeedbackSend,
    Key::FeedbackThanks,
    Key::FeedbackFailed,
];

/// The texts the banner script shows (the rest are the `<noscript>` link's and the choices page's).
const SCRIPT_KEYS: [Key; 16] = [
    Key::Title,
    Key::BannerText,
    Key::Accept,
    Key::Reject,
    Key::Choose,
    Key::Save,
    Key::Legend,
    Key::AlwaysOn,
    Key::Firmographic,
    Key::FirmographicText,
    Key::Personal,
    Key::PersonalText,
    Key::More,
    Key::Why,
    Key::Policy,
    Key::Saved,
];

/// The placeholders a text may use.
fn placeholders(key: usize) -> &'static [&'static str] {
    match KEYS[key] {
        "page_intro_opt_out" => &["region"],
        "page_current" => &["firmographic", "personal", "consent_id"],
        _ => &[],
    }
}

const EN: [&str; N] = [
    "Your privacy choices",
    "We can tailor this site to your organization. We only do so if you agree.",
    "Accept all",
    "Reject all",
    "Choose",
    "Save my choices",
    "Choose what we may use",
    "Always on: the page you are on, the campaign link you followed and your country. None of this identifies you.",
    "Your organization",
    "We may look up which company your network belongs to, to show content for your industry or company.",
    "You personally",
    "We may remember you across visits to tailor what you see.",
    "More about your choices",
    "Why am I seeing this?",
    "Privacy policy",
    "Your choice is saved.",
    "Privacy choices: decide what this site may use about you",
    "This site can tailor what it shows. Some of that uses no personal data at all; the rest only happens if you \
     agree, and you can change your mind here at any time.",
    "Your connection appears to come from {region}. There, this site may tailor what it shows to your \
     organization unless you object; you can object, or change your mind, here at any time.",
    "You have not made a choice on this site yet.",
    "You have not objected, so content may be tailored for your organization. You can object below.",
    "Your current choices: your organization — {firmographic}; you personally — {personal} (consent id \
     {consent_id}).",
    "allowed",
    "not allowed",
    "Your browser sends a Global Privacy Control signal. We honour it: whatever you choose here, we do not look \
     up your organization or remember you while it is on.",
    "Back to the site",
    "Yes",
    "No",
    "Dismiss this question",
    "Thank you. Anything you would like to add? (optional)",
    "Send",
    "Thank you for your feedback.",
    "Your answer could not be sent. Please try again later.",
];

const DE: [&str; N] = [
    "Ihre Datenschutz-Einstellungen",
    "Wir können diese Website auf Ihre Organisation zuschneiden. Das tun wir nur, wenn Sie zustimmen.",
    "Alle akzeptieren",
    "Alle ablehnen",
    "Auswählen",
    "Auswahl speichern",
    "Wählen Sie, was wir verwenden dürfen",
    "Immer aktiv: die Seite, auf der Sie sind, der Kampagnenlink, dem Sie gefolgt sind, und Ihr Land. Nichts \
     davon identifiziert Sie.",
    "Ihre Organisation",
    "Wir dürfen nachschlagen, zu welchem Unternehmen Ihr Netzwerk gehört, um Inhalte für Ihre Branche oder Ihr \
     Unternehmen zu zeigen.",
    "Sie persönlich",
    "Wir dürfen Sie über Besuche hinweg wiedererkennen, um anzupassen, was Sie sehen.",
    "Mehr zu Ihren Wahlmöglichkeiten",
    "Warum sehe ich das?",
    "Datenschutzerklärung",
    "Ihre Auswahl ist gespeichert.",
    "Datenschutz-Einstellungen: Entscheiden Sie, was diese Website über Sie verwenden darf",
    "Diese Website kann anpassen, was sie zeigt. Ein Teil davon verwendet keinerlei personenbezogene Daten; der \
     Rest geschieht nur, wenn Sie zustimmen, und Sie können Ihre Meinung hier jederzeit ändern.",
    "Ihre Verbindung scheint aus {region} zu kommen. Dort darf diese Website Inhalte auf Ihre Organisation \
     zuschneiden, solange Sie nicht widersprechen; Sie können hier jederzeit widersprechen oder Ihre Meinung \
     ändern.",
    "Sie haben auf dieser Website noch keine Auswahl getroffen.",
    "Sie haben nicht widersprochen, daher können Inhalte auf Ihre Organisation zugeschnitten werden. Sie können \
     unten widersprechen.",
    "Ihre aktuelle Auswahl: Ihre Organisation — {firmographic}; Sie persönlich — {personal} (Einwilligungs-ID \
     {consent_id}).",
    "erlaubt",
    "nicht erlaubt",
    "Ihr Browser sendet ein Global-Privacy-Control-Signal. Wir respektieren es: Was Sie hier auch wählen, solange \
     es aktiv ist, schlagen wir Ihre Organisation nicht nach und merken uns nichts über Sie.",
    "Zurück zur Website",
    "Ja",
    "Nein",
    "Diese Frage schließen",
    "Danke. Möchten Sie noch etwas ergänzen? (optional)",
    "Senden",
    "Danke für Ihre Rückmeldung.",
    "Ihre Antwort konnte nicht gesendet werden. Bitte versuchen Sie es später noch einmal.",
];

/// The longest text an operator may configure, in characters.
pub(crate) const MAX_TEXT: usize = 2000;

/// One language's texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Texts {
    /// The language tag, lower case (`en`, `de`, `pt-br`).
    pub lang: String,
    values: Vec<String>,
}

impl Texts {
    fn shipped(lang: &str, values: &[&str; N]) -> Texts {
        Texts {
            lang: lang.to_string(),
            values: values.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub(crate) fn get(&self, key: Key) -> &str {
        &self.values[key as usize]
    }

    /// `key`'s text, HTML-escaped, with its placeholders replaced by `fill`'s (already escaped) markup.
    pub(crate) fn html(&self, key: Key, fill: &[(&str, &str)]) -> String {
        let mut out = String::new();
        let mut rest = self.get(key);
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}').map(|c| open + c) else {
                break;
            };
            let name = &rest[open + 1..close];
            match fill.iter().find(|(n, _)| *n == name) {
                Some((_, value)) => {
                    crate::rules::template::escape_attr(&rest[..open], &mut out);
                    out.push_str(value);
                }
                None => crate::rules::template::escape_attr(&rest[..=close], &mut out),
            }
            rest = &rest[close + 1..];
        }
        crate::rules::template::escape_attr(rest, &mut out);
        out
    }

    /// The texts a script needs, as one JSON object (`lang`, `policy_url` and `keys`).
    fn script_json(&self, policy_url: Option<&str>, keys: &[Key]) -> String {
        let mut map = serde_json::Map::new();
        map.insert("lang".into(), self.lang.clone().into());
        map.insert(
            "policy_url".into(),
            policy_url.map_or(serde_json::Value::Null, |u| u.to_string().into()),
        );
        for k in keys {
            map.insert(KEYS[*k as usize].to_string(), self.get(*k).into());
        }
        serde_json::Value::Object(map).to_string()
    }
}

/// Every configured language, the default among them, the policy link, and the banner script per language.
#[derive(Debug, Clone)]
pub struct Catalog {
    languages: Vec<Texts>,
    default: usize,
    policy_url: Option<String>,
    scripts: Vec<bytes::Bytes>,
    feedback_scripts: Vec<bytes::Bytes>,
    version: String,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog::build(
            vec![Texts::shipped("en", &EN), Texts::shipped("de", &DE)],
            0,
            None,
        )
    }
}

/// The banner's and the prompt's scripts, with `__CONCIERGE_TEXTS__` where a language's texts go.
const CONSENT_JS: &str = include_str!("../../assets/consent.js");
const FEEDBACK_JS: &str = include_str!("../../assets/feedback.js");
const MARKER: &str = "__CONCIERGE_TEXTS__";

impl Catalog {
    fn build(languages: Vec<Texts>, default: usize, policy_url: Option<String>) -> Catalog {
        let fill = |js: &str, keys: &[Key]| -> Vec<bytes::Bytes> {
            languages
                .iter()
                .map(|t| {
                    js.replacen(MARKER, &t.script_json(policy_url.as_deref(), keys), 1)
                        .into()
                })
                .collect()
        };
        let scripts = fill(CONSENT_JS, &SCRIPT_KEYS);
        let feedback_scripts = fill(FEEDBACK_JS, &FEEDBACK_KEYS);
        // A short fingerprint of every script, in their URLs: a change of wording is never served from a
        // browser's cache.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in scripts
            .iter()
            .chain(&feedback_scripts)
            .flat_map(|s| s.iter())
        {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        Catalog {
            languages,
            default,
            policy_url,
            scripts,
            feedback_scripts,
            version: format!("{:08x}", h as u32),
        }
    }

    /// The texts of the language `accept_language` (an `Accept-Language` header) prefers, else the default's.
    pub fn negotiate(&self, accept_language: Option<&[u8]>) -> &Texts {
        let i = accept_language
            .and_then(|h| negotiate(h, self.languages.iter().map(|t| t.lang.as_str())))
            .unwrap_or(self.default);
        &self.languages[i]
    }

    /// The texts of `lang` exactly (as the banner script's URL names it), else the default's.
    pub fn by_tag(&self, lang: &str) -> &Texts {
        &self.languages[self.index(lang).unwrap_or(self.default)]
    }

    fn index(&self, lang: &str) -> Option<usize> {
        self.languages
            .iter()
            .position(|t| t.lang.eq_ignore_ascii_case(lang))
    }

    /// Whether `lang` is one of the configured languages (what a consent record may name).
    pub fn knows(&self, lang: &str) -> bool {
        self.index(lang).is_some()
    }

    /// The banner script for `lang` (the default language's for an unknown one).
    pub fn script(&self, lang: &str) -> bytes::Bytes {
        self.scripts[self.index(lang).unwrap_or(self.default)].clone()
    }

    /// The feedback prompt's script for `lang` (the default language's for an unknown one).
    pub fn feedback_script(&self, lang: &str) -> bytes::Bytes {
        self.feedback_scripts[self.index(lang).unwrap_or(self.default)].clone()
    }

    /// The fingerprint of the scripts, put in their URLs.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The operator's privacy policy (`consent.policy_url`).
    pub fn policy_url(&self) -> Option<&str> {
        self.policy_url.as_deref()
    }

    pub fn languages(&self) -> impl Iterator<Item = &str> {
        self.languages.iter().map(|t| t.lang.as_str())
    }

    pub fn default_language(&self) -> &str {
        &self.languages[self.default].lang
    }
}

/// Why a configured text, language or link was refused: (config key, message).
pub(crate) type Problem = (String, String);

/// Build the catalog from `[consent.texts.*]`, `consent.default_language` and `consent.policy_url`; every
/// problem is returned, none stops at the first.
pub(crate) fn configure(
    texts: &BTreeMap<String, BTreeMap<String, String>>,
    default_language: Option<&str>,
    policy_url: Option<&str>,
) -> (Catalog, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut languages = vec![Texts::shipped("en", &EN), Texts::shipped("de", &DE)];
    for (lang, entries) in texts {
        let table = format!("consent.texts.{lang}");
        if !is_language_tag(lang) {
            problems.push((
                table,
                format!(
                    "`{lang}` is not a language tag; write one like \"en\", \"de\" or \"pt-br\""
                ),
            ));
            continue;
        }
        let tag = lang.to_ascii_lowercase();
        let slot = match languages.iter().position(|t| t.lang == tag) {
            Some(i) => i,
            None => {
                let missing: Vec<&str> = KEYS
                    .iter()
                    .filter(|k| !entries.contains_key(**k))
                    .copied()
                    .collect();
                if !missing.is_empty() {
                    problems.push((
                        table.clone(),
                        format!(
                            "a language that does not ship with Concierge must give every text; missing: {}",
                            missing.join(", ")
                        ),
                    ));
                }
                languages.push(Texts::shipped(&tag, &EN));
                languages.len() - 1
            }
        };
        for (key, value) in entries {
            let at = format!("{table}.{key}");
            let Some(i) = KEYS.iter().position(|k| k == key) else {
                let hint = crate::hint::closest(key, KEYS.iter().copied())
                    .map(|h| format!(" (did you mean `{h}`?)"))
                    .unwrap_or_default();
                problems.push((at, format!("`{key}` is not a banner text{hint}")));
                continue;
            };
            if let Err(why) = check_text(value, placeholders(i)) {
                problems.push((at, why));
                continue;
            }
            languages[slot].values[i] = value.clone();
        }
    }
    let default = match default_language {
        None => 0,
        Some(d) => match languages
            .iter()
            .position(|t| t.lang.eq_ignore_ascii_case(d))
        {
            Some(i) => i,
            None => {
                let known: Vec<&str> = languages.iter().map(|t| t.lang.as_str()).collect();
                problems.push((
                    "consent.default_language".into(),
                    format!(
                        "`{d}` has no texts; configured languages: {} (add [consent.texts.{d}])",
                        known.join(", ")
                    ),
                ));
                0
            }
        },
    };
    let policy = match policy_url {
        None => None,
        Some(u) => match check_policy_url(u) {
            Ok(()) => Some(u.to_string()),
            Err(why) => {
                problems.push(("consent.policy_url".into(), why));
                None
            }
        },
    };
    (Catalog::build(languages, default, policy), problems)
}

fn check_text(value: &str, allowed: &[&str]) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err("is empty; a visitor would see nothing".into());
    }
    if value.chars().count() > MAX_TEXT {
        return Err(format!("is longer than {MAX_TEXT} characters"));
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        return Err("contains a control character".into());
    }
    let mut rest = value;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}').map(|c| open + c) else {
            break;
        };
        let name = &rest[open + 1..close];
        if !allowed.contains(&name) {
            let hint = crate::hint::closest(name, allowed.iter().copied())
                .map(|h| format!(" (did you mean `{{{h}}}`?)"))
                .unwrap_or_default();
            let offer = if allowed.is_empty() {
                "this text has none".to_string()
            } else {
                format!(
                    "this text may use {}",
                    allowed
                        .iter()
                        .map(|a| format!("{{{a}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            return Err(format!("`{{{name}}}` is not a placeholder{hint}; {offer}"));
        }
        rest = &rest[close + 1..];
    }
    Ok(())
}

/// A privacy policy link: an absolute `https://` (or `http://`) URL, or a path on this site (`/privacy`).
fn check_policy_url(u: &str) -> Result<(), String> {
    let ok_chars = !u.is_empty()
        && u.len() <= 2048
        && u.bytes().all(|b| b.is_ascii_graphic())
        && !u.contains(['"', '<', '>', '\\']);
    let ok_shape = u.starts_with("https://")
        || u.starts_with("http://")
        || (u.starts_with('/') && !u.starts_with("//"));
    if ok_chars && ok_shape {
        Ok(())
    } else {
        Err(format!(
            "`{u}` is not a link to a privacy policy; write an https:// URL or a path on this site such as \"/privacy\""
        ))
    }
}

/// A language tag as configuration may name it: letters, digits and `-`, up to 35, starting with a letter.
fn is_language_tag(s: &str) -> bool {
    (2..=35).contains(&s.len())
        && s.as_bytes()[0].is_ascii_alphabetic()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.ends_with('-')
        && !s.contains("--")
}

/// The most `Accept-Language` ranges a request may weigh; the rest of a longer header is ignored.
const MAX_RANGES: usize = 32;
/// The longest header read.
const MAX_HEADER: usize = 4096;

/// Which of `available` (lower-case tags) an `Accept-Language` header prefers (RFC 9110 §12.5.4, with RFC
/// 4647 lookup: `de-AT` matches `de`, `pt` matches `pt-br`): the highest weight wins, the earlier range on a
/// tie, `q=0` excludes, `*` means the default (`None`). Malformed ranges are skipped; bytes are never trusted.
pub fn negotiate<'a>(
    header: &[u8],
    available: impl Iterator<Item = &'a str> + Clone,
) -> Option<usize> {
    let header = &header[..header.len().min(MAX_HEADER)];
    let text = std::str::from_utf8(header).ok()?;
    let mut best: Option<(u16, usize)> = None; // (q in thousandths, index)
    let mut excluded: Vec<usize> = Vec::new();
    for item in text.split(',').take(MAX_RANGES) {
        let mut parts = item.split(';');
        let range = parts.next().unwrap_or("").trim();
        let mut q: u16 = 1000;
        let mut valid = !range.is_empty()
            && range.len() <= 35
            && (range == "*"
                || range
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        for p in parts {
            match p.trim().split_once('=') {
                Some((k, v)) if k.trim().eq_ignore_ascii_case("q") => match parse_q(v.trim()) {
                    Some(v) => q = v,
                    None => valid = false,
                },
                _ => {}
            }
        }
        if !valid || range == "*" {
            continue;
        }
        let found = available.clone().enumerate().find(|(_, lang)| {
            range.eq_ignore_ascii_case(lang) || prefix_of(lang, range) || prefix_of(range, lang)
        });
        let Some((i, _)) = found else { continue };
        if q == 0 {
            // `de;q=0` excludes `de` (and `de-at`); `de-at;q=0` does not exclude plain `de`.
            let lang = available.clone().nth(i).unwrap_or("");
            if range.eq_ignore_ascii_case(lang) || prefix_of(range, lang) {
                excluded.push(i);
            }
            continue;
        }
        if excluded.contains(&i) {
            continue;
        }
        if best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, i));
        }
    }
    best.map(|(_, i)| i).filter(|i| !excluded.contains(i))
}

/// `short` is a prefix of `long` up to a subtag boundary (`de` of `de-at`), ignoring case.
fn prefix_of(short: &str, long: &str) -> bool {
    long.len() > short.len()
        && long.as_bytes()[short.len()] == b'-'
        && long[..short.len()].eq_ignore_ascii_case(short)
}

/// A weight: `0`, `1`, `0.5`, `0.125`, `1.000` (at most three decimals), in thousandths.
fn parse_q(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let scaled = frac.bytes().chain(std::iter::repeat(b'0')).take(3);
    let thousandths = scaled.fold(0u16, |acc, b| acc * 10 + u16::from(b - b'0'));
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_header_negotiates_to_a_configured_language_or_none(h in proptest::collection::vec(any::<u8>(), 0..200)) {
            let l = langs();
            if let Some(i) = negotiate(&h, l.iter().copied()) {
                prop_assert!(i < l.len());
            }
        }

        #[test]
        fn the_exact_tag_with_the_highest_weight_wins(q in 1u16..=999) {
            let h = format!("en;q=0.{q:03}, de");
            prop_assert_eq!(pick(&h), Some("de"));
            let h = format!("de;q=0.{q:03}, fr, en;q=0");
            prop_assert_eq!(pick(&h), Some("de"));
        }
    }

    fn langs() -> Vec<&'static str> {
        vec!["en", "de", "pt-br"]
    }

    fn pick(h: &str) -> Option<&'static str> {
        let l = langs();
        negotiate(h.as_bytes(), l.iter().copied()).map(|i| l[i])
    }

    #[test]
    fn accept_language_picks_the_preferred_configured_language() {
        assert_eq!(pick("de-DE,de;q=0.9,en;q=0.8"), Some("de"));
        assert_eq!(pick("fr-FR, fr;q=0.9, en;q=0.5, de;q=0.4"), Some("en"));
        assert_eq!(pick("en;q=0.5, de"), Some("de"));
        assert_eq!(pick("de-AT"), Some("de"));
        assert_eq!(pick("pt"), Some("pt-br"));
        assert_eq!(pick("PT-BR"), Some("pt-br"));
        assert_eq!(pick("fr"), None);
        assert_eq!(pick("*"), None);
        assert_eq!(pick(""), None);
        // A tie goes to the earlier range.
        assert_eq!(pick("de;q=0.8, en;q=0.8"), Some("de"));
        // q=0 excludes, even if a broader range allowed it.
        assert_eq!(pick("de;q=0, de-AT;q=0.9, en;q=0.1"), Some("en"));
        assert_eq!(pick("de-AT;q=0, de;q=0.5, en;q=0.1"), Some("de"));
        // Malformed weights and ranges are skipped, not guessed.
        assert_eq!(pick("de;q=2, en;q=0.7"), Some("en"));
        assert_eq!(pick("de;q=abc, en"), Some("en"));
        assert_eq!(pick("d<e>, en"), Some("en"));
        assert_eq!(parse_q("0.125"), Some(125));
        assert_eq!(parse_q("1.000"), Some(1000));
        assert_eq!(parse_q("1.001"), None);
        assert_eq!(parse_q("0.1234"), None);
    }

    #[test]
    fn the_shipped_languages_give_every_text_and_the_script_carries_them() {
        let c = Catalog::default();
        assert_eq!(KEYS.len(), N);
        assert_eq!(KEYS[Key::Back as usize], "back");
        assert_eq!(CONSENT_JS.matches(MARKER).count(), 1);
        assert_eq!(FEEDBACK_JS.matches(MARKER).count(), 1);
        let fb = String::from_utf8(c.feedback_script("de").to_vec()).unwrap();
        assert!(fb.contains("\"feedback_yes\":\"Ja\""), "{fb}");
        let de = String::from_utf8(c.script("de").to_vec()).unwrap();
        assert!(de.contains("\"reject\":\"Alle ablehnen\""), "{de}");
        assert!(!de.contains(MARKER));
        assert_eq!(c.by_tag("xx").lang, "en");
        assert_eq!(c.negotiate(Some(b"de-CH,de;q=0.9")).lang, "de");
        assert_eq!(c.negotiate(None).lang, "en");
        assert_eq!(c.version().len(), 8);
    }

    #[test]
    fn placeholders_are_filled_and_everything_else_is_escaped() {
        let mut t = Texts::shipped("en", &EN);
        t.values[Key::PageIntroOptOut as usize] = "<b>{region}</b> & {other}".into();
        assert_eq!(
            t.html(Key::PageIntroOptOut, &[("region", "<strong>X</strong>")]),
            "&lt;b&gt;<strong>X</strong>&lt;/b&gt; &amp; {other}"
        );
    }

    #[test]
    fn configured_texts_override_add_and_are_checked_all_at_once() {
        let mut texts = BTreeMap::new();
        texts.insert(
            "de".to_string(),
            BTreeMap::from([("accept".to_string(), "Einverstanden".to_string())]),
        );
        texts.insert(
            "fr".to_string(),
            BTreeMap::from([
                ("acept".to_string(), "Tout accepter".to_string()),
                ("page_current".to_string(), "{firmografic}".to_string()),
            ]),
        );
        let (c, problems) = configure(&texts, Some("fr"), Some("javascript:alert(1)"));
        assert_eq!(c.by_tag("de").get(Key::Accept), "Einverstanden");
        assert_eq!(c.by_tag("de").get(Key::Reject), "Alle ablehnen");
        let said: Vec<String> = problems.iter().map(|(k, m)| format!("{k}: {m}")).collect();
        assert_eq!(said.len(), 4, "{said:#?}");
        assert!(
            said[0].starts_with("consent.texts.fr: a language that does not ship"),
            "{said:#?}"
        );
        assert!(
            said[1].contains(
                "consent.texts.fr.acept: `acept` is not a banner text (did you mean `accept`?)"
            ),
            "{said:#?}"
        );
        assert!(
            said[2]
                .contains("`{firmografic}` is not a placeholder (did you mean `{firmographic}`?)"),
            "{said:#?}"
        );
        assert!(
            said[3].starts_with("consent.policy_url: `javascript:alert(1)` is not a link"),
            "{said:#?}"
        );
        let (_, problems) = configure(&BTreeMap::new(), Some("es"), Some("/privacy"));
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].1.contains("configured languages: en, de"),
            "{problems:?}"
        );
    }
}
