//! `{{ variable }}` templates in rule text, checked at load (unknown variables and variables above the rule's
//! tier are errors, never empty strings) and rendered with the escaping of the place the value lands.

use crate::consent::policy::Tier;

/// Where a rendered value lands, which decides its escaping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Element text: lol_html escapes `<`, `>`, `&` when inserting text, so values go in raw.
    Text,
    /// A double-quoted attribute value: `&`, `<`, `>`, `"`, `'` become entities.
    Attribute,
    /// A URL attribute (`href`, `src`, …): values are percent-encoded as a URL component (so they cannot
    /// introduce a scheme, a path or a query), then attribute-escaped.
    Url,
    /// Inside a trusted HTML snippet: values are HTML-escaped.
    Html,
}

impl Context {
    /// The context of an attribute value: [`Context::Url`] for URL attributes.
    pub fn attribute(url: bool) -> Context {
        if url {
            Context::Url
        } else {
            Context::Attribute
        }
    }
}

/// The variables templates may use, and the tier each needs.
pub const VARIABLES: &[(&str, Tier)] = &[
    ("page.path", Tier::Anonymous),
    ("geo.country", Tier::Anonymous),
    ("geo.subdivision", Tier::Anonymous),
    ("utm.source", Tier::Anonymous),
    ("utm.medium", Tier::Anonymous),
    ("utm.campaign", Tier::Anonymous),
    ("utm.term", Tier::Anonymous),
    ("utm.content", Tier::Anonymous),
    ("company.name", Tier::Firmographic),
    ("company.domain", Tier::Firmographic),
    ("company.industry", Tier::Firmographic),
    ("company.employees", Tier::Firmographic),
    ("company.country", Tier::Firmographic),
    ("account.name", Tier::Firmographic),
    ("account.domain", Tier::Firmographic),
    ("account.owner", Tier::Firmographic),
    ("account.industry", Tier::Firmographic),
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Var(&'static str),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("`{{{{` without a closing `}}}}`")]
    Unclosed,
    #[error("unknown variable `{0}`{hint}; known: {1}", hint = crate::hint::closest(.0, VARIABLES.iter().map(|(n, _)| *n)).map(|h| format!(" (did you mean `{h}`?)")).unwrap_or_default())]
    Unknown(String, String),
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or(TemplateError::Unclosed)?;
            let name = after[..end].trim();
            let var = VARIABLES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(n, _)| *n)
                .ok_or_else(|| {
                    TemplateError::Unknown(
                        name.to_string(),
                        VARIABLES
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", "),
                    )
                })?;
            parts.push(Part::Var(var));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// The highest tier among the variables used.
    pub fn tier(&self) -> Tier {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Var(v) => VARIABLES.iter().find(|(n, _)| n == v).map(|(_, t)| *t),
                Part::Literal(_) => None,
            })
            .max()
            .unwrap_or(Tier::Anonymous)
    }

    /// The literal text before the first variable (for URL scheme checks).
    pub fn literal_prefix(&self) -> &str {
        match self.parts.first() {
            Some(Part::Literal(l)) => l,
            _ => "",
        }
    }

    pub fn has_variables(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Var(_)))
    }

    /// Render with `lookup` giving each variable's value (`None` renders as empty; the plan only applies a
    /// rule whose variables all have values). Literal text is the rule author's and goes in as written,
    /// except in attribute contexts, where it is escaped like values.
    pub fn render(&self, ctx: Context, lookup: &dyn Fn(&str) -> Option<String>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Literal(l) => match ctx {
                    Context::Attribute | Context::Url => escape_attr(l, &mut out),
                    Context::Text | Context::Html => out.push_str(l),
                },
                Part::Var(v) => {
                    let value = lookup(v).unwrap_or_default();
                    match ctx {
                        Context::Text => out.push_str(&value),
                        Context::Attribute => escape_attr(&value, &mut out),
                        Context::Url => escape_attr(&percent_encode(&value), &mut out),
                        Context::Html => escape_attr(&value, &mut out),
                    }
                }
            }
        }
        out
    }

    /// Every variable used.
    pub fn variables(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(*v),
            Part::Literal(_) => None,
        })
    }
}

/// HTML-escape for text and double- or single-quoted attribute values.
pub fn escape_attr(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// Percent-encode everything but RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Attributes whose value is a URL.
pub fn is_url_attribute(name: &str) -> bool {
    matches!(
        name,
        "href" | "src" | "action" | "formaction" | "poster" | "cite" | "data" | "background"
    )
}

/// A URL's scheme is safe to put in a page: relative, `http(s)`, `mailto`, `tel`. Browsers ignore ASCII
/// whitespace and control characters inside a scheme, so those are dropped before comparing.
pub fn safe_url_prefix(prefix: &str) -> bool {
    let cleaned: String = prefix
        .chars()
        .filter(|c| !c.is_ascii_whitespace() && !c.is_ascii_control())
        .collect::<String>()
        .to_ascii_lowercase();
    match cleaned.find(':') {
        // A colon after a `/`, `?` or `#` is not a scheme separator.
        Some(i) if !cleaned[..i].contains(['/', '?', '#']) => {
            let scheme = &cleaned[..i];
            matches!(scheme, "http" | "https" | "mailto" | "tel")
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vals(v: &str) -> Option<String> {
        match v {
            "company.name" => Some("A&B \"<Corp>\" 'x' javascript:alert(1)".into()),
            "utm.campaign" => Some("spring".into()),
            _ => None,
        }
    }

    #[test]
    fn parse_and_render() {
        let t = Template::parse("Hello {{ company.name }}!").unwrap();
        assert_eq!(t.tier(), Tier::Firmographic);
        assert_eq!(
            t.render(Context::Text, &vals),
            "Hello A&B \"<Corp>\" 'x' javascript:alert(1)!"
        );
        assert_eq!(
            t.render(Context::Attribute, &vals),
            "Hello A&amp;B &quot;&lt;Corp&gt;&quot; &#39;x&#39; javascript:alert(1)!"
        );
        let u = Template::parse("{{company.name}}").unwrap();
        let url = u.render(Context::Url, &vals);
        assert!(
            !url.contains(':') && !url.contains('"') && !url.contains('<'),
            "{url}"
        );
        assert_eq!(
            Template::parse("{{ utm.campaign }}").unwrap().tier(),
            Tier::Anonymous
        );
        assert!(matches!(
            Template::parse("{{ company.nam }}"),
            Err(TemplateError::Unknown(..))
        ));
        assert_eq!(Template::parse("{{ oops"), Err(TemplateError::Unclosed));
        assert!(!Template::parse("plain").unwrap().has_variables());
    }

    #[test]
    fn url_schemes() {
        for ok in [
            "/demo",
            "https://x",
            "HTTP://x",
            "mailto:a@b",
            "?a=b:c",
            "/p:q",
            "#x",
            "",
        ] {
            assert!(safe_url_prefix(ok), "{ok}");
        }
        for bad in [
            "javascript:alert(1)",
            " JaVa\tScRiPt:x",
            "data:text/html,x",
            "vbscript:x",
            "java\u{1}script:",
        ] {
            assert!(!safe_url_prefix(bad), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn attribute_values_never_carry_markup_or_quotes(v in "\\PC{0,40}") {
            let t = Template::parse("x{{ company.name }}").unwrap();
            let value = v.clone();
            let out = t.render(Context::Attribute, &move |_| Some(value.clone()));
            prop_assert!(!out.contains(['"', '<', '>', '\'']));
            let value = v.clone();
            let out = t.render(Context::Url, &move |_| Some(value.clone()));
            prop_assert!(out[1..].chars().all(|c| c.is_ascii_alphanumeric() || "-._~%".contains(c)));
        }

        #[test]
        fn parsing_never_panics(s in "\\PC{0,60}") {
            let _ = Template::parse(&s);
        }
    }
}
