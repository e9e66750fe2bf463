//! Rule files: what to change on which pages, for whom. One TOML file per account (`rules/accounts/`), plus
//! segments (`rules/segments/`) and regions (`rules/regions/`), and site-wide defaults (`rules/*.toml`).
//!
//! Loading validates everything (file, line and column in every error; selectors parsed; templates checked
//! against the rule's tier) and compiles a [`RuleSet`]; [`RuleSet::plan`] picks, for one visitor, the
//! personalizations that match **and** are permitted by the consent Decision, resolves conflicts
//! deterministically (account > segment > region > default, then `priority`, then file order) and returns a
//! [`Plan`] with the reason for every candidate — what `concierge explain` prints.
//!
//! Invariants: a rule set is complete and valid or not loaded at all; a rule needing a tier the Decision does
//! not permit never applies; the plan never depends on anything but its inputs.

pub mod template;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::consent::policy::{Decision, Tier};
use crate::firmographics::company::{line_col, Company, SourceError};
use crate::firmographics::Geo;
use template::{is_url_attribute, safe_url_prefix, Context, Template};

/// Largest rule file and snippet read (a rule file is hand-written; anything larger is a mistake).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
const MAX_SNIPPET_BYTES: u64 = 256 * 1024;

/// The scale a rule file works at; earlier variants win conflicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    Account,
    Segment,
    Region,
    Default,
}

// ------------------------------------------------------------------------------------------------ raw shape

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    /// Identity, read by the firmographics loader; only its presence and domain matter here.
    account: Option<toml::Value>,
    #[serde(default)]
    personalization: Vec<toml::Spanned<RawPersonalization>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPersonalization {
    id: toml::Spanned<String>,
    tier: toml::Spanned<String>,
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    paths: Vec<toml::Spanned<String>>,
    #[serde(default)]
    when: RawWhen,
    #[serde(default)]
    action: Vec<toml::Spanned<RawAction>>,
    /// The qualitative feedback prompt (shown by the feedback widget).
    feedback: Option<toml::Spanned<RawFeedback>>,
    /// Pages this rule personalizes carry a "Why am I seeing this?" link.
    #[serde(default)]
    why_link: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWhen {
    #[serde(default)]
    industry: Vec<String>,
    employees_min: Option<u64>,
    employees_max: Option<u64>,
    #[serde(default)]
    country: Vec<toml::Spanned<String>>,
    #[serde(default)]
    subdivision: Vec<toml::Spanned<String>>,
    #[serde(default)]
    utm_source: Vec<String>,
    #[serde(default)]
    utm_medium: Vec<String>,
    #[serde(default)]
    utm_campaign: Vec<String>,
    #[serde(default)]
    query: BTreeMap<String, String>,
    #[serde(default)]
    referrer_host: Vec<String>,
    cookie: Option<String>,
    from: Option<toml::Spanned<String>>,
    until: Option<toml::Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFeedback {
    pub question: String,
    #[serde(default)]
    pub comment: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    select: Option<toml::Spanned<String>>,
    set_text: Option<toml::Spanned<String>>,
    set_html: Option<toml::Spanned<String>>,
    set_attribute: Option<toml::Spanned<RawAttribute>>,
    append_attribute: Option<toml::Spanned<RawAttribute>>,
    before: Option<toml::Spanned<RawInsert>>,
    after: Option<toml::Spanned<RawInsert>>,
    prepend: Option<toml::Spanned<RawInsert>>,
    append: Option<toml::Spanned<RawInsert>>,
    remove: Option<bool>,
    add_class: Option<toml::Spanned<String>>,
    inject: Option<toml::Spanned<String>>,
}

// Values carry their spans so an error points at the offending key's line, not at the action's header.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAttribute {
    name: toml::Spanned<String>,
    value: toml::Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInsert {
    text: Option<toml::Spanned<String>>,
    html: Option<toml::Spanned<String>>,
}

// ------------------------------------------------------------------------------------------------ compiled

/// What to insert: text (escaped by the rewriter) or HTML (a trusted snippet, values escaped).
#[derive(Debug, Clone)]
pub enum Content {
    Text(Template),
    Html(Template),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    Before,
    After,
    Prepend,
    Append,
}

/// Proxy-provided assets a rule can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Asset {
    ConsentBanner,
    Feedback,
    WhyLink,
}

#[derive(Debug, Clone)]
pub enum ActionKind {
    SetContent(Content),
    SetAttribute {
        name: String,
        value: Template,
        url: bool,
    },
    AppendAttribute {
        name: String,
        value: Template,
        url: bool,
    },
    Insert(Position, Content),
    Remove,
    AddClass(String),
    Inject(Asset),
}

/// One change to the elements a selector matches.
#[derive(Debug, Clone)]
pub struct Action {
    pub selector: String,
    /// `selector`, parsed once at load (shared with every response's rewriter, never re-parsed).
    pub parsed: Arc<lol_html::Selector>,
    pub kind: ActionKind,
    /// The selector names one element ([`names_one_element`]), decided at load.
    pub names_one: bool,
    /// Index of this action's (selector, slot) in the rule set: actions with the same index conflict.
    /// Assigned when the set is assembled, so planning compares integers.
    pub slot: usize,
}

impl Action {
    /// What two actions must share to conflict: the same selector and the same slot of the element.
    fn slot_key(&self) -> (String, String) {
        let slot = match &self.kind {
            ActionKind::SetContent(_) | ActionKind::Remove => "content".to_string(),
            ActionKind::SetAttribute { name, .. } => format!("attribute {name}"),
            ActionKind::AppendAttribute { name, .. } => format!("attribute {name} (append)"),
            ActionKind::Insert(p, _) => format!("insert {p:?}").to_lowercase(),
            ActionKind::AddClass(c) => format!("class {c}"),
            ActionKind::Inject(a) => format!("inject {a:?}"),
        };
        (self.selector.clone(), slot)
    }

    fn templates(&self) -> Vec<&Template> {
        match &self.kind {
            ActionKind::SetContent(Content::Text(t) | Content::Html(t))
            | ActionKind::Insert(_, Content::Text(t) | Content::Html(t))
            | ActionKind::SetAttribute { value: t, .. }
            | ActionKind::AppendAttribute { value: t, .. } => vec![t],
            _ => vec![],
        }
    }
}

/// Conditions; every one given must hold.
#[derive(Debug, Clone, Default)]
pub struct When {
    pub industry: Vec<String>,
    pub employees_min: Option<u64>,
    pub employees_max: Option<u64>,
    pub country: Vec<String>,
    pub subdivision: Vec<String>,
    pub utm_source: Vec<String>,
    pub utm_medium: Vec<String>,
    pub utm_campaign: Vec<String>,
    pub query: BTreeMap<String, String>,
    pub referrer_host: Vec<String>,
    pub cookie: Option<String>,
    /// Unix seconds, inclusive / exclusive.
    pub from: Option<u64>,
    pub until: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Feedback {
    pub question: String,
    pub comment: bool,
}

/// Longest feedback question, in characters (it is a one-line prompt).
pub const MAX_QUESTION_CHARS: usize = 200;

/// One personalization, compiled.
#[derive(Debug, Clone)]
pub struct Personalization {
    /// `<file stem>/<id>`, unique in the set.
    pub id: String,
    pub file: PathBuf,
    pub scale: Scale,
    /// For account files: the account's domain (the rule applies only to visitors from it).
    pub account: Option<String>,
    pub tier: Tier,
    pub priority: i32,
    pub paths: Vec<PathPattern>,
    pub when: When,
    pub actions: Vec<Action>,
    pub feedback: Option<Feedback>,
    /// Pages this rule personalizes carry the "why am I seeing this" link.
    pub why_link: bool,
    /// Load order, the last tie-breaker.
    pub order: usize,
}

/// A path pattern: `*` matches within one segment, `**` across segments; anything else literally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern(pub String);

impl PathPattern {
    pub fn matches(&self, path: &str) -> bool {
        glob(self.0.as_bytes(), path.as_bytes())
    }
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    // Iterative matcher with backtracking for the last star (linear in practice; patterns are short).
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize, bool)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            let double = p.get(pi + 1) == Some(&b'*');
            pi += if double { 2 } else { 1 };
            star = Some((pi, si, double));
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss, double)) = star {
            if !double && s[ss] == b'/' {
                return false;
            }
            star = Some((sp, ss + 1, double));
            pi = sp;
            si = ss + 1;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// A loaded, validated rule set.
#[derive(Debug, Default)]
pub struct RuleSet {
    /// In precedence order, winner first.
    pub personalizations: Vec<Personalization>,
    /// Number of distinct (selector, slot) pairs (see [`Action::slot`]).
    slots: usize,
    /// Statically possible conflicts (same selector and slot in two rules): (winner, loser, slot).
    pub conflicts: Vec<Conflict>,
    /// A short fingerprint of the set's content (recorded with decisions).
    pub version: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Conflict {
    pub selector: String,
    pub slot: String,
    pub winner: String,
    pub loser: String,
}

// ------------------------------------------------------------------------------------------------ loading

fn err(
    file: &Path,
    text: &str,
    span: Option<std::ops::Range<usize>>,
    msg: impl Into<String>,
) -> SourceError {
    SourceError::new(file, span.map(|s| line_col(text, s.start)), msg)
}

/// `YYYY-MM-DD` (start of day, UTC) as Unix seconds.
fn parse_date(s: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339_weak(&format!("{s} 00:00:00")).ok()?;
    t.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

fn parse_tier(s: &str) -> Option<Tier> {
    match s {
        "anonymous" => Some(Tier::Anonymous),
        "firmographic" => Some(Tier::Firmographic),
        "personal" => Some(Tier::Personal),
        _ => None,
    }
}

fn read_bounded(path: &Path, max: u64) -> Result<String, String> {
    crate::firmographics::company::read_text(path, max).map_err(|(_, e)| e)
}

/// Parse and validate one rule file.
pub fn parse_file(
    file: &Path,
    text: &str,
    scale: Scale,
    rules_dir: &Path,
) -> Result<Vec<Personalization>, Vec<SourceError>> {
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        vec![err(
            file,
            text,
            e.span(),
            e.message().trim_end().to_string(),
        )]
    })?;
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().trim_end_matches(".toml").to_string())
        .unwrap_or_default();
    let account = match (&raw.account, scale) {
        (Some(a), _) => a
            .get("domain")
            .and_then(|d| d.as_str())
            .map(|d| d.trim().to_ascii_lowercase()),
        (None, Scale::Account) if !raw.personalization.is_empty() => {
            return Err(vec![err(
                file,
                text,
                None,
                "an account file needs an [account] table with the account's domain",
            )]);
        }
        (None, _) => None,
    };
    if raw.account.is_some() && scale != Scale::Account {
        return Err(vec![err(file, text, None, "[account] belongs in rules/accounts/; segment, region and default files have no identity")]);
    }
    let mut errors = Vec::new();
    let mut out = Vec::new();
    let mut ids = HashMap::new();
    for raw_p in raw.personalization {
        let p_span = raw_p.span();
        let p = raw_p.into_inner();
        let id_text = p.id.get_ref().trim().to_string();
        let id_ok = !id_text.is_empty()
            && id_text.len() <= 64
            && id_text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !id_ok {
            errors.push(err(
                file,
                text,
                Some(p.id.span()),
                format!("id `{id_text}` must be 1–64 letters, digits, `-`, `_` or `.`"),
            ));
            continue;
        }
        if let Some(prev) = ids.insert(id_text.clone(), p.id.span()) {
            let (l, _) = line_col(text, prev.start);
            errors.push(err(
                file,
                text,
                Some(p.id.span()),
                format!("id `{id_text}` is already used on line {l}"),
            ));
            continue;
        }
        let Some(tier) = parse_tier(p.tier.get_ref()) else {
            errors.push(err(
                file,
                text,
                Some(p.tier.span()),
                format!(
                    "tier `{}` is not one of anonymous, firmographic, personal",
                    p.tier.get_ref()
                ),
            ));
            continue;
        };
        if scale == Scale::Account && tier == Tier::Anonymous {
            errors.push(err(file, text, Some(p.tier.span()), "an account rule uses the visitor's company, so its tier is firmographic (or personal), not anonymous"));
            continue;
        }
        let mut paths = Vec::new();
        for path in &p.paths {
            let v = path.get_ref();
            if !v.starts_with('/') || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
                errors.push(err(file, text, Some(path.span()), format!("path `{v}` must start with `/` and contain no spaces; `*` matches within a segment, `**` across")));
            } else {
                paths.push(PathPattern(v.clone()));
            }
        }
        if p.paths.is_empty() {
            paths.push(PathPattern("/**".into()));
        }
        let w = p.when;
        let mut when = When {
            industry: w.industry.iter().map(|s| s.trim().to_lowercase()).collect(),
            employees_min: w.employees_min,
            employees_max: w.employees_max,
            utm_source: w.utm_source,
            utm_medium: w.utm_medium,
            utm_campaign: w.utm_campaign,
            query: w.query,
            referrer_host: w
                .referrer_host
                .iter()
                .map(|s| s.trim().to_ascii_lowercase())
                .collect(),
            cookie: w.cookie,
            ..When::default()
        };
        for c in &w.country {
            let v = c.get_ref().to_ascii_uppercase();
            if v.len() == 2 && v.bytes().all(|b| b.is_ascii_uppercase()) {
                when.country.push(v);
            } else {
                errors.push(err(
                    file,
                    text,
                    Some(c.span()),
                    format!(
                        "country `{}` is not an ISO 3166-1 alpha-2 code like \"US\"",
                        c.get_ref()
                    ),
                ));
            }
        }
        for c in &w.subdivision {
            let v = c.get_ref().to_ascii_uppercase();
            if v.split_once('-')
                .is_some_and(|(cc, s)| cc.len() == 2 && (1..=3).contains(&s.len()))
            {
                when.subdivision.push(v);
            } else {
                errors.push(err(
                    file,
                    text,
                    Some(c.span()),
                    format!(
                        "subdivision `{}` must be written country-subdivision, e.g. \"US-CA\"",
                        c.get_ref()
                    ),
                ));
            }
        }
        for (slot, value) in [(&mut when.from, &w.from), (&mut when.until, &w.until)] {
            if let Some(v) = value {
                match parse_date(v.get_ref()) {
                    Some(t) => *slot = Some(t),
                    None => errors.push(err(
                        file,
                        text,
                        Some(v.span()),
                        format!("`{}` is not a date; write YYYY-MM-DD", v.get_ref()),
                    )),
                }
            }
        }
        if let (Some(a), Some(b)) = (when.from, when.until) {
            if a >= b {
                errors.push(err(
                    file,
                    text,
                    w.until.as_ref().map(|u| u.span()),
                    "until must be after from",
                ));
            }
        }
        if let (Some(a), Some(b)) = (when.employees_min, when.employees_max) {
            if a > b {
                errors.push(err(
                    file,
                    text,
                    Some(p_span.clone()),
                    "when.employees_min is larger than when.employees_max",
                ));
            }
        }
        // Conditions on company data need the firmographic tier.
        let firmographic_conditions = !when.industry.is_empty()
            || when.employees_min.is_some()
            || when.employees_max.is_some();
        if firmographic_conditions && tier == Tier::Anonymous {
            errors.push(err(file, text, Some(p.tier.span()), "conditions on industry or employees use the visitor's company: tier must be firmographic"));
        }
        let feedback = match p.feedback {
            None => None,
            Some(f) => {
                let span = f.span();
                let f = f.into_inner();
                let question = f.question.trim().to_string();
                if question.is_empty()
                    || question.chars().count() > MAX_QUESTION_CHARS
                    || question.chars().any(char::is_control)
                {
                    errors.push(err(
                        file,
                        text,
                        Some(span),
                        format!("feedback.question must be one line of 1–{MAX_QUESTION_CHARS} characters"),
                    ));
                    None
                } else {
                    Some(Feedback {
                        question,
                        comment: f.comment,
                    })
                }
            }
        };
        let mut actions = Vec::new();
        if p.action.is_empty() {
            errors.push(err(
                file,
                text,
                Some(p_span.clone()),
                format!("personalization `{id_text}` has no [[personalization.action]]"),
            ));
        }
        for a in p.action {
            match compile_action(file, text, a, rules_dir) {
                Ok(action) => {
                    if matches!(action.kind, ActionKind::Inject(Asset::Feedback))
                        && feedback.is_none()
                    {
                        errors.push(err(
                            file,
                            text,
                            Some(p_span.clone()),
                            format!("personalization `{id_text}` injects the feedback widget but has no [personalization.feedback] question"),
                        ));
                    }
                    for t in action.templates() {
                        if t.tier() > tier {
                            errors.push(err(
                                file,
                                text,
                                Some(p.tier.span()),
                                format!(
                                "personalization `{id_text}` uses {} (tier {}), but its tier is {}",
                                t.variables().collect::<Vec<_>>().join(", "),
                                t.tier().name(),
                                tier.name()
                            ),
                            ));
                        }
                    }
                    actions.push(action);
                }
                Err(e) => errors.push(e),
            }
        }
        out.push(Personalization {
            id: format!("{stem}/{id_text}"),
            file: file.to_path_buf(),
            scale,
            account: account.clone(),
            tier,
            priority: p.priority,
            paths,
            when,
            actions,
            feedback,
            why_link: p.why_link,
            order: 0,
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn compile_action(
    file: &Path,
    text: &str,
    raw: toml::Spanned<RawAction>,
    rules_dir: &Path,
) -> Result<Action, SourceError> {
    let span = raw.span();
    let a = raw.into_inner();
    let at = |s: std::ops::Range<usize>| Some(s);
    let template = |t: &toml::Spanned<String>| {
        Template::parse(t.get_ref()).map_err(|e| err(file, text, at(t.span()), e.to_string()))
    };
    let snippet = |name: &toml::Spanned<String>| -> Result<Template, SourceError> {
        let rel = Path::new(name.get_ref());
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(err(
                file,
                text,
                at(name.span()),
                format!(
                    "snippet `{}` must be a path inside the rules folder",
                    name.get_ref()
                ),
            ));
        }
        let path = rules_dir.join(rel);
        let body = read_bounded(&path, MAX_SNIPPET_BYTES).map_err(|e| {
            err(
                file,
                text,
                at(name.span()),
                format!("snippet `{}`: {e}", path.display()),
            )
        })?;
        Template::parse(&body).map_err(|e| {
            err(
                file,
                text,
                at(name.span()),
                format!("snippet `{}`: {e}", path.display()),
            )
        })
    };
    let insert = |i: &toml::Spanned<RawInsert>| -> Result<Content, SourceError> {
        match (&i.get_ref().text, &i.get_ref().html) {
            (Some(t), None) => Ok(Content::Text(template(t)?)),
            (None, Some(h)) => snippet(h).map(Content::Html),
            _ => Err(err(
                file,
                text,
                at(i.span()),
                "an insertion takes exactly one of text = \"…\" or html = \"snippets/file.html\"",
            )),
        }
    };
    let attribute =
        |attr: &toml::Spanned<RawAttribute>| -> Result<(String, Template, bool), SourceError> {
            let attr = attr.get_ref();
            let name = attr.name.get_ref().trim().to_ascii_lowercase();
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_:".contains(&b));
            if !valid {
                return Err(err(
                    file,
                    text,
                    at(attr.name.span()),
                    format!("`{}` is not an attribute name", attr.name.get_ref()),
                ));
            }
            if name.starts_with("on") || matches!(name.as_str(), "style" | "srcdoc") {
                return Err(err(
                    file,
                    text,
                    at(attr.name.span()),
                    format!(
                    "attribute `{name}` can run script or restyle the page; rules may not set it"
                ),
                ));
            }
            let value = template(&attr.value)?;
            let url = is_url_attribute(&name);
            if url && !safe_url_prefix(value.literal_prefix()) {
                return Err(err(
                    file,
                    text,
                    at(attr.value.span()),
                    format!(
                        "`{}` is not a safe URL: only relative, http(s), mailto and tel links",
                        attr.value.get_ref()
                    ),
                ));
            }
            Ok((name, value, url))
        };
    let mut kinds = Vec::new();
    if let Some(t) = &a.set_text {
        kinds.push(ActionKind::SetContent(Content::Text(template(t)?)));
    }
    if let Some(h) = &a.set_html {
        kinds.push(ActionKind::SetContent(Content::Html(snippet(h)?)));
    }
    if let Some(attr) = &a.set_attribute {
        let (name, value, url) = attribute(attr)?;
        kinds.push(ActionKind::SetAttribute { name, value, url });
    }
    if let Some(attr) = &a.append_attribute {
        let (name, value, url) = attribute(attr)?;
        kinds.push(ActionKind::AppendAttribute { name, value, url });
    }
    for (pos, ins) in [
        (Position::Before, &a.before),
        (Position::After, &a.after),
        (Position::Prepend, &a.prepend),
        (Position::Append, &a.append),
    ] {
        if let Some(i) = ins {
            kinds.push(ActionKind::Insert(pos, insert(i)?));
        }
    }
    if a.remove == Some(true) {
        kinds.push(ActionKind::Remove);
    }
    if let Some(class) = &a.add_class {
        let c = class.get_ref().trim();
        if c.is_empty()
            || c.chars()
                .any(|ch| ch.is_whitespace() || ch == '"' || ch == '<')
        {
            return Err(err(
                file,
                text,
                at(class.span()),
                format!("add_class `{c}` must be one class name"),
            ));
        }
        kinds.push(ActionKind::AddClass(c.to_string()));
    }
    if let Some(i) = &a.inject {
        let asset = match i.get_ref().as_str() {
            "consent-banner" => Asset::ConsentBanner,
            "feedback" => Asset::Feedback,
            "why-link" => Asset::WhyLink,
            other => {
                return Err(err(
                    file,
                    text,
                    at(i.span()),
                    format!("inject `{other}` is not one of consent-banner, feedback, why-link"),
                ))
            }
        };
        kinds.push(ActionKind::Inject(asset));
    }
    let kind = match kinds.len() {
        1 => kinds.pop().expect("one"),
        0 => return Err(err(file, text, at(span), "an action needs one of set_text, set_html, set_attribute, append_attribute, before, after, prepend, append, remove, add_class, inject")),
        _ => return Err(err(file, text, at(span), "an action does exactly one thing; split it into several [[personalization.action]] tables")),
    };
    let (selector, sel_span) = match (&a.select, &kind) {
        (Some(s), _) => (s.get_ref().trim().to_string(), s.span()),
        (None, ActionKind::Inject(_)) => ("body".to_string(), span.clone()),
        (None, _) => {
            return Err(err(
                file,
                text,
                at(span),
                "the action needs select = \"css selector\"",
            ))
        }
    };
    let parsed = selector.parse::<lol_html::Selector>().map_err(|e| {
        err(
            file,
            text,
            at(sel_span),
            format!("selector `{selector}`: {e}"),
        )
    })?;
    Ok(Action {
        names_one: names_one_element(&selector),
        selector,
        parsed: Arc::new(parsed),
        kind,
        slot: 0,
    })
}

/// Whether a selector names at most one element of a document: an id (optionally with a tag name and classes:
/// `#hero`, `h1#hero.big`), or `head` / `body` (a parser ignores second ones). Ids are unique in a document; as
/// with `getElementById`, the first element carrying it is the one.
pub fn names_one_element(selector: &str) -> bool {
    let s = selector.trim();
    if s.eq_ignore_ascii_case("head") || s.eq_ignore_ascii_case("body") {
        return true;
    }
    let Some((tag, rest)) = s.split_once('#') else {
        return false;
    };
    let word = |w: &str| {
        !w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    (tag.is_empty() || word(tag)) && rest.split('.').all(word)
}

/// Every file and folder the rule set is read from (for change detection).
pub fn watched_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for sub in ["", "accounts", "segments", "regions", "snippets"] {
        let folder = if sub.is_empty() {
            dir.to_path_buf()
        } else {
            dir.join(sub)
        };
        files.push(folder.clone());
        if let Ok(entries) = std::fs::read_dir(&folder) {
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            found.sort();
            files.extend(found);
        }
    }
    files
}

impl RuleSet {
    /// A set from already-parsed personalizations (tests, fuzzing, tools): ordered by precedence.
    pub fn from_personalizations(mut ps: Vec<Personalization>) -> RuleSet {
        for (i, p) in ps.iter_mut().enumerate() {
            p.order = i;
        }
        ps.sort_by(precedence);
        // Number the (selector, slot) pairs; the first rule (in precedence order) to use one wins it, and
        // every later rule using it is a statically possible conflict.
        let mut ids: HashMap<(String, String), (usize, String)> = HashMap::new();
        let mut conflicts = Vec::new();
        for p in &mut ps {
            for a in &mut p.actions {
                let key = a.slot_key();
                let next = ids.len();
                let (id, winner) = ids
                    .entry(key.clone())
                    .or_insert_with(|| (next, p.id.clone()));
                a.slot = *id;
                if *winner != p.id {
                    conflicts.push(Conflict {
                        selector: key.0,
                        slot: key.1,
                        winner: winner.clone(),
                        loser: p.id.clone(),
                    });
                }
            }
        }
        RuleSet {
            personalizations: ps,
            slots: ids.len(),
            conflicts,
            version: "unversioned".into(),
        }
    }

    /// Load every rule file under `dir` (a missing folder is an empty set). All errors are returned together.
    pub fn load(dir: &Path) -> Result<RuleSet, Vec<SourceError>> {
        let mut files: Vec<(PathBuf, Scale)> = Vec::new();
        let mut errors = Vec::new();
        for (sub, scale) in [
            (Some("accounts"), Scale::Account),
            (Some("segments"), Scale::Segment),
            (Some("regions"), Scale::Region),
            (None, Scale::Default),
        ] {
            let folder = sub.map_or_else(|| dir.to_path_buf(), |s| dir.join(s));
            let entries = match std::fs::read_dir(&folder) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    errors.push(SourceError::new(
                        &folder,
                        None,
                        format!("cannot read the folder: {e}"),
                    ));
                    continue;
                }
            };
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
                .collect();
            found.sort();
            files.extend(found.into_iter().map(|p| (p, scale)));
        }
        let mut personalizations = Vec::new();
        let mut hasher = Fnv::default();
        for (path, scale) in &files {
            let text = match crate::firmographics::company::read_text(path, MAX_FILE_BYTES) {
                Ok(t) => t,
                Err((loc, e)) => {
                    errors.push(SourceError::new(path, loc, e));
                    continue;
                }
            };
            hasher.write(path.to_string_lossy().as_bytes());
            hasher.write(text.as_bytes());
            match parse_file(path, &text, *scale, dir) {
                Ok(ps) => personalizations.extend(ps),
                Err(es) => errors.extend(es),
            }
        }
        let mut seen: HashMap<String, PathBuf> = HashMap::new();
        for p in &personalizations {
            if let Some(other) = seen.insert(p.id.clone(), p.file.clone()) {
                errors.push(SourceError::new(
                    &p.file,
                    None,
                    format!(
                        "rule id `{}` is also used by {}; file names must differ",
                        p.id,
                        other.display()
                    ),
                ));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(RuleSet {
            version: format!("{:016x}", hasher.0),
            ..RuleSet::from_personalizations(personalizations)
        })
    }
}

/// Winner first: account > segment > region > default, then higher priority, then earlier file order.
fn precedence(a: &Personalization, b: &Personalization) -> std::cmp::Ordering {
    a.scale
        .cmp(&b.scale)
        .then(b.priority.cmp(&a.priority))
        .then(a.order.cmp(&b.order))
}

/// FNV-1a, for the rule-set version (not security-relevant: it names a version, it proves nothing).
#[derive(Default)]
struct Fnv(u64);

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        if self.0 == 0 {
            self.0 = 0xcbf2_9ce4_8422_2325;
        }
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

// ------------------------------------------------------------------------------------------------ planning

/// The host of the request's `Referer`, for `when.referrer_host`.
pub fn referrer_host(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get(http::header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<http::Uri>().ok())
        .and_then(|u| u.host().map(str::to_string))
}

/// The names of the cookies the request carries (at most 64), for `when.cookie`. Read as bytes: a cookie
/// holding non-ASCII bytes hides none of the others.
pub fn cookie_names(headers: &http::HeaderMap) -> Vec<&str> {
    crate::consent::cookies::names(headers, 64)
}

/// Everything a plan is made from, for one request.
pub struct Visitor<'a> {
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub referrer_host: Option<&'a str>,
    /// Names of the cookies the request carries.
    pub cookies: Vec<&'a str>,
    pub geo: &'a Geo,
    /// The company, when the lookup ran and found one.
    pub company: Option<&'a Company>,
    pub decision: &'a Decision,
    /// Unix seconds.
    pub now: u64,
}

impl Visitor<'_> {
    fn query_param(&self, name: &str) -> Option<&str> {
        crate::consent::signals::query_param(self.query, name)
    }

    /// A template variable's value.
    pub fn variable(&self, name: &str) -> Option<String> {
        let c = self.company;
        let account = c.filter(|c| c.account);
        match name {
            "page.path" => Some(self.path.to_string()),
            "geo.country" => self.geo.country.clone(),
            "geo.subdivision" => self.geo.subdivision.clone(),
            "utm.source" | "utm.medium" | "utm.campaign" | "utm.term" | "utm.content" => self
                .query_param(&format!("utm_{}", &name[4..]))
                .map(|v| v.replace('+', " ")),
            "company.name" => c.map(|c| c.name.clone()),
            "company.domain" => c.and_then(|c| c.domain.clone()),
            "company.industry" => c.and_then(|c| c.industry.clone()),
            "company.employees" => c.and_then(|c| c.employees.clone()),
            "company.country" => c.and_then(|c| c.country.clone()),
            "account.name" => account.map(|c| c.name.clone()),
            "account.domain" => account.and_then(|c| c.domain.clone()),
            "account.owner" => account.and_then(|c| c.owner.clone()),
            "account.industry" => account.and_then(|c| c.industry.clone()),
            _ => None,
        }
    }
}

/// Why a candidate did or did not make it into the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "why", rename_all = "snake_case")]
pub enum Verdict {
    Applied,
    NotPermitted(String),
    NotMatched(String),
    /// Matched, but every action lost a conflict to a rule with higher precedence.
    Overridden(String),
}

/// The plan for one response: the actions to apply, and the verdict on every candidate.
/// Borrows from the [`RuleSet`] it was made from: planning copies nothing.
#[derive(Debug, Clone, Default)]
pub struct Plan<'a> {
    pub actions: Vec<(&'a Personalization, &'a Action)>,
    pub verdicts: Vec<(&'a Personalization, Verdict)>,
    pub rules_version: &'a str,
}

impl Plan<'_> {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// Ids of the rules that contribute at least one action.
    pub fn applied(&self) -> Vec<&str> {
        self.verdicts
            .iter()
            .filter(|(_, v)| *v == Verdict::Applied)
            .map(|(p, _)| p.id.as_str())
            .collect()
    }
}

fn industry_matches(wanted: &[String], have: Option<&str>) -> bool {
    let Some(have) = have else { return false };
    let have = have.trim().to_lowercase();
    wanted.contains(&have)
}

/// `1000-4999`, `5000+`, `250` → (low, high).
fn employee_range(s: &str) -> Option<(u64, u64)> {
    let s = s.trim().replace([',', ' '], "");
    if let Some(low) = s.strip_suffix('+') {
        return Some((low.parse().ok()?, u64::MAX));
    }
    match s.split_once('-') {
        Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
        None => s.parse().ok().map(|n| (n, n)),
    }
}

fn check_when(p: &Personalization, v: &Visitor) -> Result<(), String> {
    let w = &p.when;
    if let Some(domain) = &p.account {
        let visitor_domain = v.company.and_then(|c| c.domain.as_deref());
        if visitor_domain != Some(domain.as_str()) {
            return Err(format!("the visitor is not from {domain}"));
        }
    }
    if !p.paths.iter().any(|pat| pat.matches(v.path)) {
        return Err(format!(
            "path {} matches none of {}",
            v.path,
            p.paths
                .iter()
                .map(|p| p.0.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !w.industry.is_empty()
        && !industry_matches(&w.industry, v.company.and_then(|c| c.industry.as_deref()))
    {
        return Err(format!("industry is not one of {}", w.industry.join(", ")));
    }
    if w.employees_min.is_some() || w.employees_max.is_some() {
        let Some((low, high)) = v
            .company
            .and_then(|c| c.employees.as_deref())
            .and_then(employee_range)
        else {
            return Err("the company's size is unknown".into());
        };
        if w.employees_min.is_some_and(|m| high < m) || w.employees_max.is_some_and(|m| low > m) {
            return Err("company size outside the range".into());
        }
    }
    if !w.country.is_empty()
        && !v
            .geo
            .country
            .as_ref()
            .is_some_and(|c| w.country.contains(c))
    {
        return Err(format!("country is not one of {}", w.country.join(", ")));
    }
    if !w.subdivision.is_empty() {
        let region = v
            .geo
            .country
            .as_ref()
            .zip(v.geo.subdivision.as_ref())
            .map(|(c, s)| format!("{c}-{s}"));
        if !region.is_some_and(|r| w.subdivision.contains(&r)) {
            return Err(format!("region is not one of {}", w.subdivision.join(", ")));
        }
    }
    for (key, wanted) in [
        ("utm_source", &w.utm_source),
        ("utm_medium", &w.utm_medium),
        ("utm_campaign", &w.utm_campaign),
    ] {
        if !wanted.is_empty()
            && !v
                .query_param(key)
                .is_some_and(|q| wanted.iter().any(|w| w == q))
        {
            return Err(format!("{key} is not one of {}", wanted.join(", ")));
        }
    }
    for (k, want) in &w.query {
        if v.query_param(k) != Some(want.as_str()) {
            return Err(format!("query parameter {k} is not {want}"));
        }
    }
    if !w.referrer_host.is_empty() {
        let host = v.referrer_host.map(str::to_ascii_lowercase);
        let ok = host.as_deref().is_some_and(|h| {
            w.referrer_host
                .iter()
                .any(|r| h == r || h.ends_with(&format!(".{r}")))
        });
        if !ok {
            return Err(format!("referrer is not {}", w.referrer_host.join(", ")));
        }
    }
    if let Some(c) = &w.cookie {
        if !v.cookies.contains(&c.as_str()) {
            return Err(format!("no cookie {c}"));
        }
    }
    if w.from.is_some_and(|f| v.now < f) {
        return Err("before the rule's from date".into());
    }
    if w.until.is_some_and(|u| v.now >= u) {
        return Err("after the rule's until date".into());
    }
    Ok(())
}

impl RuleSet {
    /// The plan for `visitor`. Rules are considered in precedence order; the first rule to claim a
    /// (selector, slot) keeps it.
    pub fn plan(&self, v: &Visitor) -> Plan<'_> {
        let mut plan = Plan {
            rules_version: &self.version,
            ..Plan::default()
        };
        // Per (selector, slot): the rule that took it.
        let mut claimed: Vec<Option<&str>> = vec![None; self.slots];
        for p in &self.personalizations {
            if !v.decision.permits(p.tier) {
                plan.verdicts.push((
                    p,
                    Verdict::NotPermitted(format!(
                        "needs the {} tier; the consent decision does not permit it",
                        p.tier.name()
                    )),
                ));
                continue;
            }
            if let Err(why) = check_when(p, v) {
                plan.verdicts.push((p, Verdict::NotMatched(why)));
                continue;
            }
            // A template whose variable has no value for this visitor would render empty: skip the rule.
            let missing = p
                .actions
                .iter()
                .flat_map(|a| a.templates())
                .flat_map(|t| t.variables())
                .find(|var| v.variable(var).is_none());
            if let Some(var) = missing {
                plan.verdicts
                    .push((p, Verdict::NotMatched(format!("no value for {var}"))));
                continue;
            }
            let mut won = 0;
            let mut lost_to = None;
            for a in &p.actions {
                match claimed[a.slot] {
                    Some(winner) => lost_to = Some(winner),
                    None => {
                        claimed[a.slot] = Some(&p.id);
                        plan.actions.push((p, a));
                        won += 1;
                    }
                }
            }
            let verdict = match (won, lost_to) {
                (0, Some(w)) => Verdict::Overridden(format!("every action is taken by {w}")),
                _ => Verdict::Applied,
            };
            plan.verdicts.push((p, verdict));
        }
        plan
    }
}

/// Render a template for `v` in `ctx`.
pub fn render(t: &Template, ctx: Context, v: &Visitor) -> String {
    t.render(ctx, &|name| v.variable(name))
}

#[cfg(test)]
mod tests;
