//! The fields `concierge audit stats` counts, read from a log line without building the whole document.
//!
//! The contract: a line read here gives the same counts as the line parsed into a `serde_json::Value` and
//! indexed, for every input — or is refused, and the caller reads it as a `Value`. Hand-written rather than
//! derived, because a derived `Deserialize` is laxer than a `Value` in three ways that matter here: it takes
//! an array for a struct (positionally), it skips unknown fields with `IgnoredAny` — which in serde_json does
//! not check what it skips (a lone surrogate escape, invalid UTF-8, a number out of range, nesting past the
//! recursion limit all pass, where a `Value` fails the line) — and it copies every string inside an `Option`.
//! Here every value is read through `deserialize_any` or a typed read, with serde_json's own checks, strings
//! are borrowed where they hold no escape, and a repeated key's last value wins, as in a `Value`.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// What the stats read of a record. Absent and `null` are both `None` (as `Value` indexing reads them); a
/// value of another type fails the line.
#[derive(Default)]
pub(super) struct StatsLine<'a> {
    pub time: Option<Text<'a>>,
    pub kind: Option<Text<'a>>,
    pub jurisdiction: Option<Object<Jurisdiction<'a>>>,
    pub permitted: Option<Vec<Text<'a>>>,
    pub outcome: Option<Text<'a>>,
    pub lookup: Option<Text<'a>>,
    pub reasons: Option<Vec<Text<'a>>>,
    pub counts: Option<Vec<Object<CountLine<'a>>>>,
    pub action: Option<Text<'a>>,
}

#[derive(Default)]
pub(super) struct Jurisdiction<'a> {
    pub region: Option<Text<'a>>,
    pub regime: Option<Text<'a>>,
}

#[derive(Default)]
pub(super) struct CountLine<'a> {
    pub decisions: Option<u64>,
    pub signal: Option<Text<'a>>,
    pub lookup: Option<Text<'a>>,
    pub region: Option<Text<'a>>,
    pub regime: Option<Text<'a>>,
}

/// `line` read as a [`StatsLine`], or `None`: read it as a `Value`.
pub(super) fn parse(line: &[u8]) -> Option<StatsLine<'_>> {
    serde_json::from_slice::<Object<StatsLine<'_>>>(line)
        .ok()
        .map(|o| o.0)
}

/// A struct whose fields are read by name from a JSON object.
pub(super) trait Fields<'de>: Default {
    /// Read the value of `key` into its field; `false` for a key that is not a field (its value is skipped).
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error>;
}

impl<'de> Fields<'de> for StatsLine<'de> {
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        match key {
            "time" => self.time = map.next_value()?,
            "type" => self.kind = map.next_value()?,
            "jurisdiction" => self.jurisdiction = map.next_value()?,
            "permitted" => self.permitted = map.next_value()?,
            "outcome" => self.outcome = map.next_value()?,
            "lookup" => self.lookup = map.next_value()?,
            "reasons" => self.reasons = map.next_value()?,
            "counts" => self.counts = map.next_value()?,
            "action" => self.action = map.next_value()?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

impl<'de> Fields<'de> for Jurisdiction<'de> {
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        match key {
            "region" => self.region = map.next_value()?,
            "regime" => self.regime = map.next_value()?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

impl<'de> Fields<'de> for CountLine<'de> {
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        match key {
            "decisions" => self.decisions = map.next_value()?,
            "signal" => self.signal = map.next_value()?,
            "lookup" => self.lookup = map.next_value()?,
            "region" => self.region = map.next_value()?,
            "regime" => self.regime = map.next_value()?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// A [`Fields`] struct read from a JSON object only (an array, where a `Value` finds no field, is refused).
pub(super) struct Object<T>(pub T);

impl<'de, T: Fields<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<T>(PhantomData<T>);
        impl<'de, T: Fields<'de>> Visitor<'de> for Visit<T> {
            type Value = Object<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object<T>, A::Error> {
                let mut out = T::default();
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    if !out.field(&key.0, &mut map)? {
                        map.next_value::<Skip>()?;
                    }
                }
                Ok(Object(out))
            }
        }
        d.deserialize_map(Visit(PhantomData))
    }
}

/// A JSON string, borrowed from the line unless it holds an escape.
pub(super) struct Text<'a>(pub Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_string())))
            }
        }
        d.deserialize_str(Visit)
    }
}

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// Any JSON value, read and dropped — through `deserialize_any`, so with every check a `Value` gets (its
/// strings decoded and their UTF-8 checked, its numbers in range, its depth within the recursion limit).
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Skip;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_str<E>(self, _: &str) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_unit<E>(self) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_none<E>(self) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Skip, D::Error> {
                Skip::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
                while seq.next_element::<Skip>()?.is_some() {}
                Ok(Skip)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
                while map.next_key::<Skip>()?.is_some() {
                    map.next_value::<Skip>()?;
                }
                Ok(Skip)
            }
        }
        d.deserialize_any(Visit)
    }
}
