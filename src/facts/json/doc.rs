//! A JSON value that borrows its strings from the text it was read from.
//!
//! The webhook reads the pod out of each review body into this instead of a
//! `serde_json::Value`: a kept string that has no escapes is a slice of the
//! body, and an object is one sorted array instead of a B-tree, so a small
//! pod costs a few dozen allocations to read and to drop instead of a few
//! hundred. The engine reads pods and templates only through it.
//!
//! Objects keep their keys sorted and unique (the last of duplicate keys
//! wins, as in serde_json), so two equal documents are equal structurally,
//! and iterate in the order a `serde_json::Map` would.
//!
//! Also here, the two halves of JSON string handling Tandem does by hand:
//! finding where a string's plain bytes end ([`plain_len`], for the reader)
//! and writing a string escaped as serde_json would ([`write_json_string`],
//! for the patch and the answer).

use std::borrow::Cow;

use serde_json::{Map, Number, Value};

/// A JSON value, its strings borrowed where they can be.
#[derive(Clone, Debug, PartialEq)]
pub enum Doc<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Doc<'a>>),
    /// Sorted by key, keys unique: build it with [`Doc::object`].
    Object(Vec<(Cow<'a, str>, Doc<'a>)>),
}

static NULL: Doc<'static> = Doc::Null;

impl<'a> Doc<'a> {
    /// An object of `entries` in any order; of duplicate keys the last wins.
    pub fn object(mut entries: Vec<(Cow<'a, str>, Doc<'a>)>) -> Doc<'a> {
        // Stable, so equal keys keep their order; then each run of equal
        // keys collapses onto its first slot, holding its last entry.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                std::mem::swap(later, kept);
            }
            same
        });
        Doc::Object(entries)
    }

    /// The value under `key` of an object; `None` for a missing key or
    /// anything but an object.
    pub fn get(&self, key: &str) -> Option<&Doc<'a>> {
        let Doc::Object(entries) = self else {
            return None;
        };
        // A pod's objects are small, and a scan that compares lengths first
        // skips most keys without reading them; a binary search compares
        // bytes at every step (it was 7% of a small pod's admission).
        if entries.len() <= 16 {
            return entries.iter().find(|(k, _)| k == key).map(|(_, v)| v);
        }
        entries
            .binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()
            .map(|i| &entries[i].1)
    }

    /// The value at a JSON pointer of plain keys (`/metadata/name`; no
    /// escapes, no array indices): what Tandem's own code asks for.
    pub fn pointer(&self, pointer: &str) -> Option<&Doc<'a>> {
        pointer
            .split('/')
            .skip(1)
            .try_fold(self, |doc, key| doc.get(key))
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Doc::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Doc::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Doc::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Doc<'a>]> {
        match self {
            Doc::Array(items) => Some(items),
            _ => None,
        }
    }

    /// An object's entries, sorted by key.
    pub fn as_object(&self) -> Option<&[(Cow<'a, str>, Doc<'a>)]> {
        match self {
            Doc::Object(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Doc::Null)
    }

    pub fn is_string(&self) -> bool {
        matches!(self, Doc::String(_))
    }

    pub fn is_array(&self) -> bool {
        matches!(self, Doc::Array(_))
    }

    pub fn is_object(&self) -> bool {
        matches!(self, Doc::Object(_))
    }

    /// The same document owning its strings, to outlive the text.
    pub fn into_owned(self) -> Doc<'static> {
        let own = |s: Cow<'a, str>| Cow::Owned(s.into_owned());
        match self {
            Doc::Null => Doc::Null,
            Doc::Bool(b) => Doc::Bool(b),
            Doc::Number(n) => Doc::Number(n),
            Doc::String(s) => Doc::String(own(s)),
            Doc::Array(items) => Doc::Array(items.into_iter().map(Doc::into_owned).collect()),
            Doc::Object(entries) => Doc::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (own(k), v.into_owned()))
                    .collect(),
            ),
        }
    }

    /// The document as a `serde_json::Value`, for code that deserializes it.
    pub fn to_value(&self) -> Value {
        match self {
            Doc::Null => Value::Null,
            Doc::Bool(b) => Value::Bool(*b),
            Doc::Number(n) => Value::Number(n.clone()),
            Doc::String(s) => Value::String(s.to_string()),
            Doc::Array(items) => Value::Array(items.iter().map(Doc::to_value).collect()),
            Doc::Object(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_value()))
                    .collect::<Map<_, _>>(),
            ),
        }
    }
}

/// Indexing as with a `Value`: `Null` for what is not there.
impl<'a> std::ops::Index<&str> for Doc<'a> {
    type Output = Doc<'a>;
    fn index(&self, key: &str) -> &Doc<'a> {
        self.get(key).unwrap_or(&NULL)
    }
}

/// Borrows the value's strings. Objects go through [`Doc::object`], which
/// costs one pass over a `Map` that is already sorted, and keeps the order
/// right should serde_json's `preserve_order` ever be switched on.
impl<'a> From<&'a Value> for Doc<'a> {
    fn from(v: &'a Value) -> Doc<'a> {
        match v {
            Value::Null => Doc::Null,
            Value::Bool(b) => Doc::Bool(*b),
            Value::Number(n) => Doc::Number(n.clone()),
            Value::String(s) => Doc::String(Cow::Borrowed(s)),
            Value::Array(items) => Doc::Array(items.iter().map(Doc::from).collect()),
            Value::Object(m) => Doc::object(
                m.iter()
                    .map(|(k, v)| (Cow::Borrowed(k.as_str()), Doc::from(v)))
                    .collect(),
            ),
        }
    }
}

/// How many bytes at the start of `bytes` a JSON string holds as they are:
/// up to the first quote, backslash or control byte. Sixteen bytes at a
/// time: most keys and values end within the first sixteen, so the loop's
/// exit is predictable. The reader scans with it, the writers copy by it.
#[inline(always)]
pub(super) fn plain_len(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The high bit of each byte below `n` (n <= 0x80). Bits above the
    // lowest can be false, the lowest never is.
    let below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGH;
    let special = |w: u64| {
        below(w ^ (ONES * u64::from(b'"')), 1)
            | below(w ^ (ONES * u64::from(b'\\')), 1)
            | below(w, 0x20)
    };
    let mut n = 0;
    while let Some(chunk) = bytes.get(n..n + 16) {
        let Ok(chunk) = <[u8; 16]>::try_from(chunk) else {
            break;
        };
        let w = u128::from_le_bytes(chunk);
        let (lo, hi) = (special(w as u64), special((w >> 64) as u64));
        if lo | hi != 0 {
            // The first special byte is in the low half when it has any.
            let at = if lo != 0 {
                lo.trailing_zeros() / 8
            } else {
                8 + hi.trailing_zeros() / 8
            };
            return n + at as usize;
        }
        n += 16;
    }
    let tail = &bytes[n..];
    n + tail
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .unwrap_or(tail.len())
}

/// Appends `s` as a JSON string, escaped byte for byte as serde_json
/// escapes it (the short escapes, `\u00XX` for other control bytes), runs
/// of plain bytes copied whole.
pub fn write_json_string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut rest = s.as_bytes();
    out.reserve(rest.len() + 2);
    out.push(b'"');
    loop {
        let n = plain_len(rest);
        out.extend_from_slice(&rest[..n]);
        let Some(&b) = rest.get(n) else {
            break;
        };
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            _ => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ],
        };
        out.extend_from_slice(short);
        rest = &rest[n + 1..];
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn objects_are_sorted_and_the_last_duplicate_wins() {
        let entries = ["b", "a", "b", "c", "a"]
            .iter()
            .enumerate()
            .map(|(i, k)| (Cow::Borrowed(*k), Doc::Number(i.into())))
            .collect();
        let doc = Doc::object(entries);
        assert_eq!(doc.to_value(), json!({"a": 4, "b": 2, "c": 3}));
        let expected = json!({"c": 3, "b": 2, "a": 4});
        assert_eq!(doc, Doc::from(&expected));
        assert_eq!(doc["b"].as_i64(), Some(2));
        assert!(doc["z"].is_null());
    }

    #[test]
    fn large_objects_are_searched_too() {
        let v: Value = (0..40)
            .map(|i| (format!("k{i}"), Value::from(i)))
            .collect::<Map<_, _>>()
            .into();
        let doc = Doc::from(&v);
        for i in 0..40 {
            assert_eq!(doc[format!("k{i}").as_str()].as_i64(), Some(i));
        }
        assert!(doc.get("k40").is_none());
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        let mut all_bytes: String = (0u8..0x80).map(char::from).collect();
        all_bytes.push_str("é😀\u{2028}");
        for s in [
            "",
            "plain",
            "a\"b\\c",
            "sixteen bytes ok and then a \" late",
            all_bytes.as_str(),
            &"x".repeat(40),
        ] {
            let mut out = Vec::new();
            write_json_string(&mut out, s);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(s).unwrap()
            );
        }
    }

    #[test]
    fn round_trips_a_value() {
        let v = json!({"metadata": {"name": "p", "labels": {"app": "x"}},
            "spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80}]}],
                     "n": -1.5, "t": true, "z": null}});
        let doc = Doc::from(&v);
        assert_eq!(doc.to_value(), v);
        assert_eq!(doc.clone().into_owned(), doc);
        assert_eq!(
            doc.pointer("/metadata/labels/app").and_then(Doc::as_str),
            Some("x")
        );
        assert_eq!(doc.pointer("/spec/nope/x"), None);
    }
}
