//! The rule file as written: the raw shape serde reads (unknown keys rejected), with spans for errors.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    /// Identity, read by the firmographics loader; only its presence and domain matter here.
    pub(super) account: Option<toml::Value>,
    #[serde(default)]
    pub(super) personalization: Vec<toml::Spanned<RawPersonalization>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPersonalization {
    pub(super) id: toml::Spanned<String>,
    pub(super) tier: toml::Spanned<String>,
    #[serde(default)]
    pub(super) priority: i32,
    #[serde(default)]
    pub(super) paths: Vec<toml::Spanned<String>>,
    #[serde(default)]
    pub(super) when: RawWhen,
    #[serde(default)]
    pub(super) action: Vec<toml::Spanned<RawAction>>,
    /// The qualitative feedback prompt (shown by the feedback widget).
    pub(super) feedback: Option<toml::Spanned<RawFeedback>>,
    /// Pages this rule personalizes carry a "Why am I seeing this?" link.
    #[serde(default)]
    pub(super) why_link: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWhen {
    #[serde(default)]
    pub(super) industry: Vec<String>,
    pub(super) employees_min: Option<u64>,
    pub(super) employees_max: Option<u64>,
    #[serde(default)]
    pub(super) country: Vec<toml::Spanned<String>>,
    #[serde(default)]
    pub(super) subdivision: Vec<toml::Spanned<String>>,
    #[serde(default)]
    pub(super) utm_source: Vec<String>,
    #[serde(default)]
    pub(super) utm_medium: Vec<String>,
    #[serde(default)]
    pub(super) utm_campaign: Vec<String>,
    #[serde(default)]
    pub(super) query: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) referrer_host: Vec<String>,
    pub(super) cookie: Option<String>,
    pub(super) from: Option<toml::Spanned<String>>,
    pub(super) until: Option<toml::Spanned<String>>,
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
pub(super) struct RawAction {
    pub(super) select: Option<toml::Spanned<String>>,
    pub(super) set_text: Option<toml::Spanned<String>>,
    pub(super) set_html: Option<toml::Spanned<String>>,
    pub(super) set_attribute: Option<toml::Spanned<RawAttribute>>,
    pub(super) append_attribute: Option<toml::Spanned<RawAttribute>>,
    pub(super) before: Option<toml::Spanned<RawInsert>>,
    pub(super) after: Option<toml::Spanned<RawInsert>>,
    pub(super) prepend: Option<toml::Spanned<RawInsert>>,
    pub(super) append: Option<toml::Spanned<RawInsert>>,
    pub(super) remove: Option<bool>,
    pub(super) add_class: Option<toml::Spanned<String>>,
    pub(super) inject: Option<toml::Spanned<String>>,
}

// Values carry their spans so an error points at the offending key's line, not at the action's header.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAttribute {
    pub(super) name: toml::Spanned<String>,
    pub(super) value: toml::Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInsert {
    pub(super) text: Option<toml::Spanned<String>>,
    pub(super) html: Option<toml::Spanned<String>>,
}
