//! Streaming HTML rewriting: a [`Plan`](crate::rules::Plan) rendered for one visitor, applied by lol_html
//! chunk by chunk as the origin's body arrives.
//!
//! Invariants: output for any split of the input into chunks is byte-identical to single-chunk output (lol_html
//! buffers what it needs); memory is bounded (`max_memory`); on any rewriting error the rest of the original
//! bytes pass through unchanged (lol_html's graceful bail-out), the error is reported once, and the page never
//! breaks.

pub mod codec;

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use lol_html::html_content::ContentType;
use lol_html::send::{ElementContentHandlers, HtmlRewriter, Settings};
use lol_html::{AsciiCompatibleEncoding, MemorySettings, OutputSink, Selector};

use crate::rules::template::Context;
use crate::rules::{
    render, Action, ActionKind, Asset, Content, Personalization, Plan, Position, Verdict, Visitor,
};

/// One operation with every value already rendered and escaped for its place.
#[derive(Debug, Clone)]
pub struct Op {
    pub selector: Arc<Selector>,
    pub kind: OpKind,
    /// The selector names one element (see [`crate::rules::names_one_element`]): the op applies to the first
    /// match only.
    pub once: bool,
}

#[derive(Debug, Clone)]
pub enum OpKind {
    SetContent(String, bool),
    SetAttribute(String, String),
    AppendAttribute(String, String),
    Insert(Position, String, bool),
    Remove,
    AddClass(String),
    /// The "why" link right after the first element a rule changed; sets the flag once placed.
    WhyNear(String, Arc<AtomicBool>),
    /// The "why" link before `</body>`, unless its `WhyNear` was placed.
    WhyFallback(String, Arc<AtomicBool>),
}

/// Elements the "why" link never follows: they live in `<head>`, or are the document's frame.
const NOT_NEAR: &[&str] = &[
    "html", "head", "body", "title", "meta", "link", "script", "style", "base", "noscript",
    "template",
];

/// Whether the "why" link may follow what `action` changes: a visible change (text, markup, an attribute, a
/// class) to an element that is not in `<head>` (judged by the selector's last element name).
fn near_candidate(action: &crate::rules::Action) -> bool {
    let visible = matches!(
        action.kind,
        ActionKind::SetContent(_)
            | ActionKind::Insert(..)
            | ActionKind::SetAttribute { .. }
            | ActionKind::AppendAttribute { .. }
            | ActionKind::AddClass(_)
    );
    let last = action
        .selector
        .rsplit(|c: char| c.is_whitespace() || c == '>' || c == '+' || c == '~' || c == ',')
        .find(|s| !s.is_empty())
        .unwrap_or("");
    let tag: String = last
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect::<String>()
        .to_ascii_lowercase();
    visible && !action.selector.contains(',') && !NOT_NEAR.contains(&tag.as_str())
}

/// The markup that loads the consent banner in the visitor's language (same-origin assets, no inline script).
/// The stylesheet is only preloaded: the banner draws itself in a shadow root of its own, which links it, so the
/// host page's styles never reach it and its styles never reach the page.
pub fn banner_markup(page: &Page) -> String {
    let mut css = String::new();
    crate::rules::template::escape_attr(&format!("{}consent.css", page.prefix), &mut css);
    let mut js = String::new();
    crate::rules::template::escape_attr(
        &format!(
            "{}consent.js?v={}&lang={}",
            page.prefix, page.texts_version, page.texts.lang
        ),
        &mut js,
    );
    format!(
        "<link rel=\"preload\" as=\"style\" href=\"{css}\"><script src=\"{js}\" defer></script>"
    )
}

/// What a visitor without JavaScript gets instead of the banner: a link to the choices page (which returns to
/// `path`), first in `<body>`.
pub fn noscript_markup(page: &Page, path: &str) -> String {
    let mut p = String::new();
    crate::rules::template::escape_attr(
        &format!(
            "{}consent?return={}",
            page.prefix,
            crate::feedback::encode_component(crate::consent::choice::page_of(path))
        ),
        &mut p,
    );
    let mut text = String::new();
    crate::rules::template::escape_attr(
        page.texts.get(crate::consent::texts::Key::Noscript),
        &mut text,
    );
    format!(
        "<noscript><p class=\"concierge-noscript\" lang=\"{lang}\"><a href=\"{p}\">{text}</a></p></noscript>",
        lang = page.texts.lang
    )
}

/// The `<head>` selector the banner goes into, parsed once.
static HEAD: std::sync::LazyLock<Option<Arc<Selector>>> =
    std::sync::LazyLock::new(|| "head".parse().ok().map(Arc::new));

/// The `<body>` selector the feedback widget and the "why" link are appended to, parsed once.
static BODY: std::sync::LazyLock<Option<Arc<Selector>>> =
    std::sync::LazyLock::new(|| "body".parse().ok().map(Arc::new));

/// What the proxy adds to a page beyond the rules' own changes, for one response.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    /// The reserved prefix the proxy's assets and endpoints live under.
    pub prefix: &'a str,
    /// The Decision asks for the consent banner.
    pub banner: bool,
    /// Every personalized page carries the "why am I seeing this" link (`proxy.why_link`).
    pub why_link: bool,
    /// The banner's texts, in the visitor's language.
    pub texts: &'a crate::consent::texts::Texts,
    /// The texts' fingerprint, in the banner script's URL.
    pub texts_version: &'a str,
}

/// One action of rule `rule` rendered for `visitor`: every template value escaped for where it lands. `None`:
/// nothing to do (an injection that does not apply to this response).
pub fn render_action(
    rule: &Personalization,
    action: &Action,
    visitor: &Visitor,
    page: &Page,
    rules_version: &str,
) -> Option<OpKind> {
    let content = |c: &Content| match c {
        Content::Text(t) => (render(t, Context::Text, visitor), false),
        Content::Html(t) => (render(t, Context::Html, visitor), true),
    };
    Some(match &action.kind {
        ActionKind::SetContent(c) => {
            let (s, html) = content(c);
            OpKind::SetContent(s, html)
        }
        ActionKind::SetAttribute { name, value, url } => OpKind::SetAttribute(
            name.clone(),
            render(value, Context::attribute(*url), visitor),
        ),
        ActionKind::AppendAttribute { name, value, url } => OpKind::AppendAttribute(
            name.clone(),
            render(value, Context::attribute(*url), visitor),
        ),
        ActionKind::Insert(pos, c) => {
            let (s, html) = content(c);
            OpKind::Insert(*pos, s, html)
        }
        ActionKind::Remove => OpKind::Remove,
        ActionKind::AddClass(c) => OpKind::AddClass(c.clone()),
        ActionKind::Inject(Asset::ConsentBanner) => {
            if !page.banner {
                return None;
            }
            OpKind::Insert(Position::Append, banner_markup(page), true)
        }
        ActionKind::Inject(Asset::Feedback) => OpKind::Insert(
            Position::Append,
            crate::feedback::widget_markup(
                &rule.id,
                rules_version,
                visitor.path,
                rule.feedback.as_ref()?,
            ),
            true,
        ),
        ActionKind::Inject(Asset::WhyLink) => OpKind::Insert(
            Position::Append,
            crate::feedback::why_link_markup(
                page.prefix,
                visitor.path,
                page.texts.get(crate::consent::texts::Key::Why),
            ),
            true,
        ),
    })
}

/// What the proxy adds to a page beyond the plan's own actions (see [`render_plan`]).
#[derive(Debug, Default)]
pub struct Additions<'a> {
    /// The consent banner, in `<head>` (no rule placed it).
    pub banner: bool,
    /// Applied rules whose feedback prompt goes at the start of `<body>` (no `inject = "feedback"` of theirs
    /// was applied).
    pub prompts: Vec<&'a Personalization>,
    /// The "why am I seeing this" link at the end of `<body>` (asked for, and no rule placed it).
    pub why_link: bool,
    /// The widgets' stylesheet (a prompt or a why link is on the page), and the feedback script (a prompt is).
    pub assets: bool,
    pub script: bool,
}

impl<'a> Additions<'a> {
    pub fn of(plan: &Plan<'a>, page: &Page) -> Additions<'a> {
        let injected = |rule: &Personalization, asset: Asset| {
            plan.actions.iter().any(|(p, a)| {
                p.id == rule.id && matches!(a.kind, ActionKind::Inject(x) if x == asset)
            })
        };
        let banner_placed = plan
            .actions
            .iter()
            .any(|(_, a)| matches!(a.kind, ActionKind::Inject(Asset::ConsentBanner)));
        // Per response: walk the verdicts, allocate nothing unless a prompt is due.
        let applied = || {
            plan.verdicts
                .iter()
                .filter(|(_, v)| *v == Verdict::Applied)
                .map(|(p, _)| *p)
        };
        let script = applied().any(|r| r.feedback.is_some());
        let why_placed = applied().any(|r| injected(r, Asset::WhyLink));
        let why = why_placed
            || applied().next().is_some() && (page.why_link || applied().any(|r| r.why_link));
        Additions {
            banner: page.banner && !banner_placed,
            prompts: applied()
                .filter(|r| r.feedback.is_some() && !injected(r, Asset::Feedback))
                .collect(),
            why_link: why && !why_placed,
            assets: script || why,
            script,
        }
    }
}

/// Render the plan's actions for `visitor`, plus what `page` adds: the consent banner in `<head>`; for each
/// applied rule with a feedback prompt, the widget (where the rule's `inject = "feedback"` puts it, else at
/// the start of `<body>`) and its assets; the "why am I seeing this" link (at the end of `<body>` unless a rule
/// places it) when a rule or `page.why_link` asks for it.
pub fn render_plan(plan: &Plan, visitor: &Visitor, page: &Page) -> Vec<Op> {
    let mut ops: Vec<Op> = plan
        .actions
        .iter()
        .filter_map(|(rule, action)| {
            Some(Op {
                selector: action.parsed.clone(),
                kind: render_action(rule, action, visitor, page, plan.rules_version)?,
                once: action.names_one,
            })
        })
        .collect();
    let add = Additions::of(plan, page);
    if let (true, Some(head)) = (add.banner, HEAD.as_ref()) {
        ops.push(Op {
            selector: head.clone(),
            kind: OpKind::Insert(Position::Append, banner_markup(page), true),
            once: true,
        });
    }
    // Prompts and the assets go right after `<body>` (the prompt is positioned by its stylesheet), so they
    // never keep the parser from stopping early; the why link goes at the end of the page.
    let mut start = String::new();
    if add.banner {
        // Without JavaScript there is no banner: a plain link to the choices page (forms, no script) instead.
        start.push_str(&noscript_markup(page, visitor.path));
    }
    for rule in &add.prompts {
        if let Some(f) = &rule.feedback {
            start.push_str(&crate::feedback::widget_markup(
                &rule.id,
                plan.rules_version,
                visitor.path,
                f,
            ));
        }
    }
    if add.assets {
        start.push_str(&crate::feedback::assets_markup(
            page.prefix,
            add.script
                .then_some((page.texts.lang.as_str(), page.texts_version)),
        ));
    }
    if let Some(body) = BODY.as_ref() {
        if !start.is_empty() {
            ops.push(Op {
                selector: body.clone(),
                kind: OpKind::Insert(Position::Prepend, start, true),
                once: true,
            });
        }
        if add.why_link {
            // Near the content it explains: right after the first element a rule changed, else (no such
            // change, or its element is not on the page) at the end of the page.
            let near = plan.actions.iter().find(|(_, a)| near_candidate(a));
            let placed = Arc::new(AtomicBool::new(false));
            if let Some((_, action)) = near {
                ops.push(Op {
                    selector: action.parsed.clone(),
                    kind: OpKind::WhyNear(
                        crate::feedback::why_link_near_markup(
                            page.prefix,
                            visitor.path,
                            page.texts.get(crate::consent::texts::Key::Why),
                        ),
                        placed.clone(),
                    ),
                    once: true,
                });
            }
            ops.push(Op {
                selector: body.clone(),
                kind: OpKind::WhyFallback(
                    crate::feedback::why_link_markup(
                        page.prefix,
                        visitor.path,
                        page.texts.get(crate::consent::texts::Key::Why),
                    ),
                    placed,
                ),
                once: true,
            });
        }
    }
    ops
}

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl OutputSink for Sink {
    fn handle_chunk(&mut self, chunk: &[u8]) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(chunk);
    }
}

fn ct(html: bool) -> ContentType {
    if html {
        ContentType::Html
    } else {
        ContentType::Text
    }
}

impl OpKind {
    /// Whether the op is complete only at the element's end tag (it changes or follows the content).
    fn needs_end_tag(&self) -> bool {
        matches!(
            self,
            OpKind::SetContent(..)
                | OpKind::Remove
                | OpKind::Insert(Position::Append | Position::After, ..)
                | OpKind::WhyNear(..)
                | OpKind::WhyFallback(..)
        )
    }
}

/// Slice size fed to the parser while it may stop early.
const EARLY_STOP_STEP: usize = 512;

/// How many once-only ops are still to complete.
struct Progress {
    remaining: AtomicUsize,
}

impl Progress {
    fn complete(&self) {
        self.remaining.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A streaming rewriter for one response body.
///
/// When every op names one element, the rewriter stops parsing once all of them are complete: the rest of the
/// page streams through as it came (nothing left to change, and no parsing cost for the long tail of a page).
pub struct Rewriter {
    inner: Option<HtmlRewriter<'static, Sink>>,
    out: Sink,
    /// After an error, input passes through untouched.
    bailed: bool,
    /// Set when every op names one element.
    progress: Option<Arc<Progress>>,
    /// Every op is complete; input passes through untouched.
    finished_early: bool,
}

/// How many elements of `html` each selector matches (a selector that does not parse counts as `None`); for
/// `concierge explain --html`, to warn about changes that would find nothing on the page.
pub fn count_matches(html: &[u8], selectors: &[&str]) -> Vec<Option<usize>> {
    let counts: Vec<Option<Arc<AtomicUsize>>> = selectors
        .iter()
        .map(|s| {
            s.parse::<Selector>()
                .ok()
                .map(|_| Arc::new(AtomicUsize::new(0)))
        })
        .collect();
    let parsed: Vec<Option<Selector>> = selectors.iter().map(|s| s.parse().ok()).collect();
    let mut settings = Settings::new_send()
        .with_strict(false)
        .with_adjust_charset_on_meta_tag(true)
        .with_memory_settings(
            MemorySettings::new()
                .with_max_allowed_memory_usage(64 * 1024 * 1024)
                .with_graceful_bail_out_on_memory_limit_exceeded(true),
        );
    for (selector, count) in parsed.iter().zip(&counts) {
        if let (Some(selector), Some(count)) = (selector, count) {
            let count = count.clone();
            let handlers = ElementContentHandlers::default().element(
                move |_: &mut lol_html::send::Element| {
                    count.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                },
            );
            settings = settings.append_element_content_handler((Cow::Borrowed(selector), handlers));
        }
    }
    let mut rw = HtmlRewriter::new(settings, |_: &[u8]| {});
    let _ = rw.write(html);
    let _ = rw.end();
    counts
        .iter()
        .map(|c| c.as_ref().map(|c| c.load(Ordering::Relaxed)))
        .collect()
}

impl Rewriter {
    /// `encoding`: the document's charset when known and ASCII-compatible (else UTF-8 with `<meta>` sniffing).
    pub fn new(
        ops: Vec<Op>,
        encoding: Option<&'static encoding_rs::Encoding>,
        max_memory: usize,
    ) -> Rewriter {
        let mut settings = Settings::new_send()
            .with_strict(false)
            .with_adjust_charset_on_meta_tag(encoding.is_none())
            .with_graceful_bail_out_on_content_handler_error(true)
            .with_memory_settings(
                MemorySettings::new()
                    .with_max_allowed_memory_usage(max_memory)
                    .with_graceful_bail_out_on_memory_limit_exceeded(true),
            );
        if let Some(enc) = encoding.and_then(AsciiCompatibleEncoding::new) {
            settings = settings.with_encoding(enc);
        }
        let progress = (!ops.is_empty() && ops.iter().all(|o| o.once)).then(|| {
            Arc::new(Progress {
                remaining: AtomicUsize::new(ops.len()),
            })
        });
        // lol_html compiles the selectors into its matcher when the rewriter is built; they are borrowed from
        // the rule set, not copied.
        let (selectors, kinds): (Vec<Arc<Selector>>, Vec<(OpKind, bool)>) = ops
            .into_iter()
            .map(|o| (o.selector, (o.kind, o.once)))
            .unzip();
        for (selector, (kind, once)) in selectors.iter().zip(kinds) {
            let progress = progress.clone();
            let fired = once.then(|| Arc::new(AtomicBool::new(false)));
            let handlers = ElementContentHandlers::default().element(
                move |el: &mut lol_html::send::Element| {
                    // A once-only op applies to the first match.
                    if let Some(f) = &fired {
                        if f.swap(true, Ordering::Relaxed) {
                            return Ok(());
                        }
                    }
                    match &kind {
                        OpKind::SetContent(s, html) => el.set_inner_content(s, ct(*html)),
                        OpKind::SetAttribute(name, value) => el.set_attribute(name, value)?,
                        OpKind::AppendAttribute(name, value) => {
                            let joined =
                                format!("{}{value}", el.get_attribute(name).unwrap_or_default());
                            el.set_attribute(name, &joined)?;
                        }
                        OpKind::Insert(pos, s, html) => match pos {
                            Position::Before => el.before(s, ct(*html)),
                            Position::After => el.after(s, ct(*html)),
                            Position::Prepend => el.prepend(s, ct(*html)),
                            Position::Append => el.append(s, ct(*html)),
                        },
                        OpKind::Remove => el.remove(),
                        OpKind::WhyNear(s, placed) => {
                            let tag = el.tag_name();
                            if !NOT_NEAR.contains(&tag.as_str()) && !el.removed() {
                                el.after(s, ct(true));
                                placed.store(true, Ordering::Relaxed);
                            }
                        }
                        OpKind::WhyFallback(s, placed) => {
                            if let Some(handlers) = el.end_tag_handlers() {
                                let (s, placed) = (s.clone(), placed.clone());
                                handlers.push(Box::new(move |end| {
                                    if !placed.load(Ordering::Relaxed) {
                                        end.before(&s, ct(true));
                                    }
                                    Ok(())
                                }));
                            }
                        }
                        OpKind::AddClass(c) => {
                            let current = el.get_attribute("class").unwrap_or_default();
                            if !current.split_ascii_whitespace().any(|x| x == c) {
                                let joined = if current.trim().is_empty() {
                                    c.clone()
                                } else {
                                    format!("{} {c}", current.trim_end())
                                };
                                el.set_attribute("class", &joined)?;
                            }
                        }
                    }
                    if let Some(p) = &progress {
                        match el.end_tag_handlers() {
                            Some(handlers) if kind.needs_end_tag() => {
                                let p = p.clone();
                                handlers.push(Box::new(move |_| {
                                    p.complete();
                                    Ok(())
                                }));
                            }
                            _ => p.complete(),
                        }
                    }
                    Ok(())
                },
            );
            settings =
                settings.append_element_content_handler((Cow::Borrowed(&**selector), handlers));
        }
        let out = Sink::default();
        Rewriter {
            inner: Some(HtmlRewriter::new(settings, out.clone())),
            out,
            bailed: false,
            progress,
            finished_early: false,
        }
    }

    fn take(&self) -> Bytes {
        Bytes::from(std::mem::take(
            &mut *self.out.0.lock().unwrap_or_else(|p| p.into_inner()),
        ))
    }

    /// Feed one chunk; returns the output ready so far, and the error if rewriting just gave up (the
    /// remaining input of that chunk is already in the output, untouched).
    pub fn write(&mut self, chunk: &[u8]) -> (Bytes, Option<String>) {
        if self.bailed || self.finished_early {
            return (Bytes::copy_from_slice(chunk), None);
        }
        let Some(rw) = self.inner.as_mut() else {
            return (Bytes::copy_from_slice(chunk), None);
        };
        // When parsing can stop early, feed small slices so that it stops soon after the last change instead
        // of at the end of a large chunk.
        let step = if self.progress.is_some() {
            EARLY_STOP_STEP
        } else {
            chunk.len().max(1)
        };
        let mut rest = chunk;
        while !rest.is_empty() {
            let (piece, tail) = rest.split_at(step.min(rest.len()));
            rest = tail;
            if let Err(e) = rw.write(piece) {
                // lol_html passed the rest of `piece` through; the rest of the chunk follows it untouched.
                self.bailed = true;
                self.inner = None;
                self.pass(rest);
                return (self.take(), Some(e.to_string()));
            }
            let done = self
                .progress
                .as_ref()
                .is_some_and(|p| p.remaining.load(Ordering::Relaxed) == 0);
            if done {
                // Flush what lol_html still holds (an unfinished tag at the slice's end comes out as it came
                // in), then pass the rest through.
                self.finished_early = true;
                if let Some(rw) = self.inner.take() {
                    if let Err(e) = rw.end() {
                        self.pass(rest);
                        return (self.take(), Some(e.to_string()));
                    }
                }
                self.pass(rest);
                break;
            }
        }
        (self.take(), None)
    }

    /// Append input to the output as it is.
    fn pass(&self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.out
                .0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(bytes);
        }
    }

    /// End of input: the rest of the output.
    pub fn end(&mut self) -> (Bytes, Option<String>) {
        match self.inner.take() {
            Some(rw) => match rw.end() {
                Ok(()) => (self.take(), None),
                Err(e) => (self.take(), Some(e.to_string())),
            },
            None => (self.take(), None),
        }
    }

    /// Rewriting gave up and the rest passes through.
    pub fn bailed(&self) -> bool {
        self.bailed
    }

    /// Every op was complete before the end of the page; the rest passed through without parsing.
    pub fn finished_early(&self) -> bool {
        self.finished_early
    }
}

/// The charset named in a `Content-Type` value, if any: `Some(None)` when it is not ASCII-compatible (the
/// body must then pass through unmodified).
pub fn charset(content_type: &str) -> Option<Option<&'static encoding_rs::Encoding>> {
    let label = content_type
        .split(';')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
        .map(|(_, v)| v.trim().trim_matches('"'))?;
    let enc = encoding_rs::Encoding::for_label(label.as_bytes())?;
    Some(AsciiCompatibleEncoding::new(enc).map(|_| enc))
}

#[cfg(test)]
mod tests;

/// Whether an origin's answer (`status`, `headers`) is one the proxy rewrites — a 200 `text/html` in one coding
/// it can decode and a charset it can read — and if so with which declared charset and coding; else why not
/// (the metric's reason: `skipped_status`, `skipped_not_html`, `skipped_encoding`, `skipped_charset`). The
/// proxy and the console's preview both ask this.
pub fn rewritable(
    status: u16,
    headers: &http::HeaderMap,
) -> Result<
    (
        Option<&'static encoding_rs::Encoding>,
        Option<codec::Origin>,
    ),
    &'static str,
> {
    if status != 200 {
        return Err("skipped_status");
    }
    let ct = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("text/html") {
        return Err("skipped_not_html");
    }
    // One coding we can decode (or none); stacked or unknown codings pass through.
    let mut coding = None;
    for token in headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
    {
        if token.trim().eq_ignore_ascii_case("identity") {
            continue;
        }
        match codec::Origin::from_token(token) {
            Some(c) if coding.is_none() => coding = Some(c),
            _ => return Err("skipped_encoding"),
        }
    }
    match charset(ct) {
        Some(None) => Err("skipped_charset"),
        Some(Some(enc)) => Ok((Some(enc), coding)),
        None => Ok((None, coding)),
    }
}
