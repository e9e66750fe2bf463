//! Loading: rule files read (bounded), validated with file:line:col, selectors and templates compiled into a
//! [`RuleSet`]; conflicts found.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::schema::{RawAction, RawAttribute, RawFile, RawInsert};
use super::template::{is_url_attribute, safe_url_prefix, Template};
use super::{
    Action, ActionKind, Asset, Conflict, Content, Feedback, PathPattern, Personalization, Position,
    RuleSet, Scale, When, MAX_FILE_BYTES, MAX_QUESTION_CHARS, MAX_SNIPPET_BYTES,
};
use crate::consent::policy::Tier;
use crate::firmographics::company::{line_col, SourceError};

fn err(
    file: &Path,
    text: &str,
    span: Option<std::ops::Range<usize>>,
    msg: impl Into<String>,
) -> SourceError {
    SourceError::new(file, span.map(|s| line_col(text, s.start)), msg)
}

/// `YYYY-MM-DD` (start of day, UTC) as Unix seconds.
pub(crate) fn parse_date(s: &str) -> Option<u64> {
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
    // Every wrong-typed value and unknown key at once; what could be read is checked too.
    let (raw, read_errors) = crate::tomlfile::read::<RawFile>(text);
    // Where a key was unreadable: a check that would only repeat it (a missing key it was) stays quiet there.
    let unreadable: Vec<std::ops::Range<usize>> =
        read_errors.iter().filter_map(|p| p.span.clone()).collect();
    let read_errors: Vec<SourceError> = read_errors
        .into_iter()
        .map(|p| err(file, text, p.span, p.message))
        .collect();
    let Some(raw) = raw else {
        return Err(read_errors);
    };
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
    let mut errors = read_errors;
    let mut out = Vec::new();
    let mut ids = HashMap::new();
    for raw_p in raw.personalization {
        let p_span = raw_p.span();
        let p = raw_p.into_inner();
        // Every problem of a personalization is reported, not only its first: a bad id or tier marks it
        // failed and the checks go on.
        let errors_before = errors.len();
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
        } else if let Some(prev) = ids.insert(id_text.clone(), p.id.span()) {
            let (l, _) = line_col(text, prev.start);
            errors.push(err(
                file,
                text,
                Some(p.id.span()),
                format!("id `{id_text}` is already used on line {l}"),
            ));
        }
        // An unknown tier is reported; the rest is checked as if it were the widest (no follow-on errors).
        let tier = match parse_tier(p.tier.get_ref()) {
            Some(t) => t,
            None => {
                let hint = crate::hint::closest(
                    p.tier.get_ref().trim(),
                    ["anonymous", "firmographic", "personal"],
                )
                .map(|h| format!("; did you mean `{h}`?"))
                .unwrap_or_default();
                errors.push(err(
                    file,
                    text,
                    Some(p.tier.span()),
                    format!(
                        "tier `{}` is not one of anonymous, firmographic, personal{hint}",
                        p.tier.get_ref()
                    ),
                ));
                Tier::Personal
            }
        };
        if scale == Scale::Account && tier == Tier::Anonymous {
            errors.push(err(file, text, Some(p.tier.span()), "an account rule uses the visitor's company, so its tier is firmographic (or personal), not anonymous"));
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
            match compile_action(file, text, a, rules_dir, &unreadable) {
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
                Err(e) => errors.extend(e),
            }
        }
        if errors.len() > errors_before {
            continue;
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
        // In the order of the file, as someone fixing it reads it.
        errors.sort_by_key(|e| e.location);
        Err(errors)
    }
}

fn compile_action(
    file: &Path,
    text: &str,
    raw: toml::Spanned<RawAction>,
    rules_dir: &Path,
    unreadable: &[std::ops::Range<usize>],
) -> Result<Action, Vec<SourceError>> {
    let span = raw.span();
    // A key of this action could not be read: "needs one of" or "needs select" would only repeat that.
    // The action's extent: its header to the next table header (serde's span may cover the header only).
    let header_end = text[span.start.min(text.len())..]
        .find('\n')
        .map_or(text.len(), |i| span.start + i);
    let extent_end = text[header_end..]
        .match_indices('\n')
        .map(|(i, _)| header_end + i + 1)
        .find(|&i| text[i..].trim_start().starts_with('['))
        .unwrap_or(text.len())
        .max(span.end);
    let touched = unreadable
        .iter()
        .any(|r| span.start <= r.start && r.start < extent_end);
    let a = raw.into_inner();
    // Every problem of the action is collected: its keys' values and its selector are checked apart.
    let mut errs: Vec<SourceError> = Vec::new();
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
    // The keys that say what the action does, with where each is written (`remove` has no span of its own).
    let s = |x: &Option<toml::Spanned<String>>| x.as_ref().map(|v| Some(v.span()));
    let doing: Vec<(&str, Option<std::ops::Range<usize>>)> = [
        ("set_text", s(&a.set_text)),
        ("set_html", s(&a.set_html)),
        (
            "set_attribute",
            a.set_attribute.as_ref().map(|v| Some(v.span())),
        ),
        (
            "append_attribute",
            a.append_attribute.as_ref().map(|v| Some(v.span())),
        ),
        ("before", a.before.as_ref().map(|v| Some(v.span()))),
        ("after", a.after.as_ref().map(|v| Some(v.span()))),
        ("prepend", a.prepend.as_ref().map(|v| Some(v.span()))),
        ("append", a.append.as_ref().map(|v| Some(v.span()))),
        ("remove", a.remove.map(|_| None)),
        ("add_class", s(&a.add_class)),
        ("inject", s(&a.inject)),
    ]
    .into_iter()
    .filter_map(|(k, on)| on.map(|span| (k, span)))
    .collect();
    let present: Vec<&str> = doing.iter().map(|(k, _)| *k).collect();
    // "Two things" points at the second key: the one to move into an action of its own.
    let second = doing
        .iter()
        .skip(1)
        .find_map(|(_, span)| span.clone())
        .unwrap_or_else(|| span.clone());
    match present.len() {
        0 if touched => {}
        0 => errs.push(err(file, text, at(span.clone()), "an action needs one of set_text, set_html, set_attribute, append_attribute, before, after, prepend, append, remove, add_class, inject")),
        1 => {}
        _ => errs.push(err(
            file,
            text,
            at(second),
            format!(
                "an action does exactly one thing, this one has {}; split it into several [[personalization.action]] tables",
                present.join(" and ")
            ),
        )),
    }
    let mut kinds = Vec::new();
    let mut keep = |r: Result<ActionKind, SourceError>| match r {
        Ok(k) => kinds.push(k),
        Err(e) => errs.push(e),
    };
    if let Some(t) = &a.set_text {
        keep(template(t).map(|t| ActionKind::SetContent(Content::Text(t))));
    }
    if let Some(h) = &a.set_html {
        keep(snippet(h).map(|t| ActionKind::SetContent(Content::Html(t))));
    }
    if let Some(attr) = &a.set_attribute {
        keep(
            attribute(attr).map(|(name, value, url)| ActionKind::SetAttribute { name, value, url }),
        );
    }
    if let Some(attr) = &a.append_attribute {
        keep(
            attribute(attr).map(|(name, value, url)| ActionKind::AppendAttribute {
                name,
                value,
                url,
            }),
        );
    }
    for (pos, ins) in [
        (Position::Before, &a.before),
        (Position::After, &a.after),
        (Position::Prepend, &a.prepend),
        (Position::Append, &a.append),
    ] {
        if let Some(i) = ins {
            keep(insert(i).map(|c| ActionKind::Insert(pos, c)));
        }
    }
    if a.remove == Some(true) {
        keep(Ok(ActionKind::Remove));
    }
    if let Some(class) = &a.add_class {
        let c = class.get_ref().trim();
        if c.is_empty()
            || c.chars()
                .any(|ch| ch.is_whitespace() || ch == '"' || ch == '<')
        {
            keep(Err(err(
                file,
                text,
                at(class.span()),
                format!("add_class `{c}` must be one class name"),
            )));
        } else {
            keep(Ok(ActionKind::AddClass(c.to_string())));
        }
    }
    if let Some(i) = &a.inject {
        keep(match i.get_ref().as_str() {
            "consent-banner" => Ok(ActionKind::Inject(Asset::ConsentBanner)),
            "feedback" => Ok(ActionKind::Inject(Asset::Feedback)),
            "why-link" => Ok(ActionKind::Inject(Asset::WhyLink)),
            other => {
                let hint = crate::hint::closest(other, ["consent-banner", "feedback", "why-link"])
                    .map(|h| format!("; did you mean `{h}`?"))
                    .unwrap_or_default();
                Err(err(
                    file,
                    text,
                    at(i.span()),
                    format!(
                        "inject `{other}` is not one of consent-banner, feedback, why-link{hint}"
                    ),
                ))
            }
        });
    }
    let is_inject = a.inject.is_some() && present.len() == 1;
    let selector = match &a.select {
        Some(s) => {
            let selector = s.get_ref().trim().to_string();
            match selector.parse::<lol_html::Selector>() {
                Ok(parsed) => Some((selector, parsed)),
                Err(e) => {
                    errs.push(err(
                        file,
                        text,
                        at(s.span()),
                        format!("selector `{selector}`: {e}"),
                    ));
                    None
                }
            }
        }
        None if is_inject => "body".parse().ok().map(|p| ("body".to_string(), p)),
        None if touched => None,
        None => {
            errs.push(err(
                file,
                text,
                at(span),
                "the action needs select = \"css selector\"",
            ));
            None
        }
    };
    if !errs.is_empty() || kinds.len() != 1 {
        return Err(errs);
    }
    let (Some((selector, parsed)), Some(kind)) = (selector, kinds.pop()) else {
        return Err(errs);
    };
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
        // Number the (selector, slot) pairs. A rule using a slot an earlier rule (in precedence order) uses
        // conflicts with it only if both can match one visitor: two account rules of different accounts never
        // do (a visitor is from one company).
        let mut ids: HashMap<(String, String), usize> = HashMap::new();
        // Per slot: the rules using it so far, with their account.
        let mut users: Vec<Vec<(String, Option<String>)>> = Vec::new();
        let mut conflicts = Vec::new();
        for p in &mut ps {
            for a in &mut p.actions {
                let key = a.slot_key();
                let next = ids.len();
                let id = *ids.entry(key.clone()).or_insert(next);
                if id == users.len() {
                    users.push(Vec::new());
                }
                a.slot = id;
                let earlier = &users[id];
                let already = earlier.iter().any(|(r, _)| *r == p.id);
                if !already {
                    let winner = earlier.iter().find(|(_, account)| {
                        !matches!((account, &p.account), (Some(x), Some(y)) if x != y)
                    });
                    if let Some((winner, _)) = winner {
                        conflicts.push(Conflict {
                            selector: key.0,
                            slot: key.1,
                            winner: winner.clone(),
                            loser: p.id.clone(),
                        });
                    }
                    users[id].push((p.id.clone(), p.account.clone()));
                }
            }
        }
        RuleSet {
            company_paths: crate::rules::CompanyPaths::of(ps.iter()),
            personalizations: ps,
            slots: users.len(),
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
