//! Qualitative feedback: the prompt a rule may carry ("Was this relevant?"), the markup that places the widget
//! on a personalized page, the answers the widget posts back, and the records they become on the `feedback`
//! stream of the audit log.
//!
//! Everything here is synchronous and free of HTTP: the proxy's endpoint (`proxy::feedback`) reads the body and
//! calls [`parse`]; `concierge feedback report` reads the records back through [`report`].
//!
//! Records hold no IP and no identifier of the visitor: time, page, the account (only when the consent decision
//! for the answering request permits the company lookup), rule id, rule-set version, the event and, for
//! answers, the answer and the visitor's comment — stored as data, never rendered as HTML.

pub(crate) mod report;

use serde::Serialize;

use crate::consent::choice::page_of;
use crate::rules::template::escape_attr;
use crate::rules::Feedback;

/// Largest feedback request body, in bytes (a comment of [`MAX_COMMENT_CHARS`] in 4-byte UTF-8, percent-encoded,
/// does not fit: such comments are refused with 413 before they are read).
pub const MAX_BODY_BYTES: usize = 4 * 1024;
/// Longest comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 500;
/// Longest page path recorded.
pub const MAX_PAGE_BYTES: usize = 512;
/// Longest rule-set version accepted (versions are 16 hex digits, or `unversioned`).
const MAX_VERSION_BYTES: usize = 64;
/// Longest rule id (`<file stem>/<id>`; file stems are domains, ids at most 64 characters).
const MAX_RULE_BYTES: usize = 320;

/// The container the widget script turns into a prompt. Inert (hidden) without the script.
pub fn widget_markup(
    rule_id: &str,
    rules_version: &str,
    page: &str,
    feedback: &Feedback,
) -> String {
    let mut s = String::with_capacity(256);
    s.push_str("<div class=\"concierge-feedback\" data-concierge-feedback=\"\" data-rule=\"");
    escape_attr(rule_id, &mut s);
    s.push_str("\" data-version=\"");
    escape_attr(rules_version, &mut s);
    s.push_str("\" data-page=\"");
    escape_attr(page_of(page), &mut s);
    s.push_str("\" data-question=\"");
    escape_attr(&feedback.question, &mut s);
    s.push_str("\" data-comment=\"");
    s.push_str(if feedback.comment { "1" } else { "0" });
    s.push_str("\" hidden></div>");
    s
}

/// The widgets' stylesheet, and the feedback script when a prompt is on the page (same-origin, no inline code),
/// with the prompt's words in `lang` (`version`: the texts' fingerprint).
pub fn assets_markup(prefix: &str, script: Option<(&str, &str)>) -> String {
    let mut p = String::new();
    escape_attr(prefix, &mut p);
    let mut s = format!("<link rel=\"stylesheet\" href=\"{p}widgets.css\">");
    if let Some((lang, version)) = script {
        let mut q = String::new();
        escape_attr(&format!("?v={version}&lang={lang}"), &mut q);
        s.push_str(&format!(
            "<link rel=\"preload\" as=\"style\" href=\"{p}feedback.css\"><script src=\"{p}feedback.js{q}\" defer></script>"
        ));
    }
    s
}

/// The "Why am I seeing this?" link for `page`, its words `label` (the visitor's language's).
pub fn why_link_markup(prefix: &str, page: &str, label: &str) -> String {
    let mut href = String::new();
    escape_attr(&why_href(prefix, page), &mut href);
    let mut text = String::new();
    escape_attr(label, &mut text);
    format!("<p class=\"concierge-why\"><a href=\"{href}\" rel=\"nofollow\">{text}</a></p>")
}

/// The "Why am I seeing this?" link for `page`, placed right after changed content: phrasing content (a
/// `<span>`, shown as a line of its own), so it is valid wherever the changed element sits.
pub fn why_link_near_markup(prefix: &str, page: &str, label: &str) -> String {
    let mut href = String::new();
    escape_attr(&why_href(prefix, page), &mut href);
    let mut text = String::new();
    escape_attr(label, &mut text);
    format!(
        "<span class=\"concierge-why concierge-why-near\"><a href=\"{href}\" rel=\"nofollow\">{text}</a></span>"
    )
}

/// `{prefix}why?page=<page, percent-encoded>` (unescaped; escape it for where it lands).
pub fn why_href(prefix: &str, page: &str) -> String {
    format!("{prefix}why?page={}", encode_component(page_of(page)))
}

/// Percent-encode everything but unreserved characters and `/`.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What the widget reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The prompt was shown to the visitor (once per visitor, page and rule).
    Shown,
    /// The visitor answered (posted the moment the answer is given); `comment` only where the prompt asks for
    /// one (the widget sends it as its own [`Event::Comment`]; an answer carrying one is still accepted).
    Answer {
        positive: bool,
        comment: Option<String>,
    },
    /// The visitor's comment on the answer they gave (after it, as its own event, so closing the prompt before
    /// commenting loses nothing).
    Comment { positive: bool, comment: String },
    /// The visitor closed the prompt without answering.
    Dismissed,
}

impl Event {
    /// The record type (and metric label) for this event.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Shown => "impression",
            Event::Answer { .. } => "feedback",
            Event::Comment { .. } => "comment",
            Event::Dismissed => "dismissal",
        }
    }
}

/// One parsed, validated feedback request (the rule is checked against the rule set by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub event: Event,
    pub rule: String,
    pub version: String,
    pub page: String,
}

/// Why a feedback request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormError {
    Malformed,
    Repeated,
    BadEvent,
    BadRule,
    BadVersion,
    BadPage,
    BadAnswer,
    CommentTooLong,
    UnexpectedComment,
    MissingComment,
}

impl FormError {
    /// What the sender is told.
    pub fn message(self) -> &'static str {
        match self {
            FormError::Malformed => "The form is not valid URL-encoded UTF-8.",
            FormError::Repeated => "The form repeats a field.",
            FormError::BadEvent => "`event` must be shown, answer, comment or dismiss.",
            FormError::BadRule => "`rule` is missing or not a rule id.",
            FormError::BadVersion => "`version` is missing or not a rule-set version.",
            FormError::BadPage => "`page` must be a path on this site.",
            FormError::BadAnswer => "An answer or comment needs `answer` = yes or no.",
            FormError::CommentTooLong => "The comment is longer than 500 characters.",
            FormError::UnexpectedComment => "Only answers and comments carry a comment.",
            FormError::MissingComment => "A comment event needs a `comment`.",
        }
    }
}

impl std::fmt::Display for FormError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for FormError {}

/// A non-empty token of at most `max` bytes: ASCII letters and digits, and the bytes in `extra`.
fn is_token(s: &str, max: usize, extra: &[u8]) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
}

/// Parse `event=shown|answer|comment|dismiss&rule=…&version=…&page=/path[&answer=yes|no][&comment=…]`. Unknown
/// fields are ignored; a repeated field is refused (which of two values was meant is anyone's guess).
pub fn parse(body: &[u8]) -> Result<Submission, FormError> {
    let text = std::str::from_utf8(body).map_err(|_| FormError::Malformed)?;
    let mut fields: [Option<String>; 6] = Default::default();
    const NAMES: [&str; 6] = ["event", "rule", "version", "page", "answer", "comment"];
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let Some(i) = NAMES.iter().position(|n| *n == k) else {
            continue;
        };
        if fields[i].is_some() {
            return Err(FormError::Repeated);
        }
        fields[i] = Some(crate::consent::choice::percent_decode(v).ok_or(FormError::Malformed)?);
    }
    let [event, rule, version, page, answer, comment] = fields;
    let rule = rule
        .filter(|r| is_token(r, MAX_RULE_BYTES, b"-_./"))
        .ok_or(FormError::BadRule)?;
    let version = version
        .filter(|v| is_token(v, MAX_VERSION_BYTES, b"-_."))
        .ok_or(FormError::BadVersion)?;
    let page = page
        .as_deref()
        .map(page_of)
        .filter(|p| p.len() <= MAX_PAGE_BYTES)
        .and_then(crate::consent::choice::safe_return)
        .ok_or(FormError::BadPage)?
        .to_string();
    let comment = match comment.as_deref().map(clean_comment) {
        Some(c) if c.chars().count() > MAX_COMMENT_CHARS => return Err(FormError::CommentTooLong),
        Some(c) if !c.is_empty() => Some(c),
        _ => None,
    };
    let event = match event.as_deref() {
        Some("shown" | "dismiss") if comment.is_some() => return Err(FormError::UnexpectedComment),
        Some("shown") => Event::Shown,
        Some("dismiss") => Event::Dismissed,
        Some(e @ ("answer" | "comment")) => {
            let positive = match answer.as_deref() {
                Some("yes") => true,
                Some("no") => false,
                _ => return Err(FormError::BadAnswer),
            };
            if e == "answer" {
                Event::Answer { positive, comment }
            } else {
                Event::Comment {
                    positive,
                    comment: comment.ok_or(FormError::MissingComment)?,
                }
            }
        }
        _ => return Err(FormError::BadEvent),
    };
    Ok(Submission {
        event,
        rule,
        version,
        page,
    })
}

/// A comment as stored: line breaks normalized to `\n`, other control characters and bidirectional
/// overrides (which could disguise the text in a terminal or spreadsheet) removed, surrounding space trimmed.
pub fn clean_comment(raw: &str) -> String {
    let text = raw.replace("\r\n", "\n").replace('\r', "\n");
    text.chars()
        .filter(|c| matches!(c, '\n' | '\t') || !(c.is_control() || is_bidi_control(*c)))
        .collect::<String>()
        .trim()
        .to_string()
}

/// Explicit directional formatting characters (embeddings, overrides, isolates, marks).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A record on the `feedback` stream. `type`: `impression` (the prompt was shown), `feedback` (an answer),
/// `comment` (a comment on the answer given) or `dismissal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeedbackRecord {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub time: String,
    /// Path only.
    pub page: String,
    /// The visitor's company domain, when the consent decision for this request permitted the lookup and it
    /// matched; otherwise absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    pub rule: String,
    pub rules_version: String,
    /// `yes` or `no` (answers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl FeedbackRecord {
    /// No request id: it would link the answer to the access log, and through it to an IP address.
    pub fn new(s: Submission, account: Option<String>) -> FeedbackRecord {
        let kind = s.event.kind();
        let (answer, comment) = match s.event {
            Event::Shown | Event::Dismissed => (None, None),
            Event::Answer { positive, comment } => {
                (Some(if positive { "yes" } else { "no" }), comment)
            }
            Event::Comment { positive, comment } => {
                (Some(if positive { "yes" } else { "no" }), Some(comment))
            }
        };
        FeedbackRecord {
            kind,
            time: crate::audit::writer::now_rfc3339(),
            page: s.page,
            account,
            rule: s.rule,
            rules_version: s.version,
            answer,
            comment,
        }
    }
}

#[cfg(test)]
mod tests;
