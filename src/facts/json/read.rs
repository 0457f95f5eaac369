//! A strict JSON reader for review bodies that builds only the values a
//! `Keep` asks for and skips the rest without building them.
//!
//! serde_json through a seed could skip values too, but it paid for every
//! skipped string and key as much as for a kept one: on a small pod the parse
//! was 40% of an admission, a third of it in strings nobody reads. Here a
//! skipped value is only checked, byte by byte against a table, and a kept
//! one is built straight into a [`Doc`] borrowing its strings from the text,
//! equal to what `serde_json::from_str` gives (the tests compare both on
//! generated and malformed documents). The input is `&str`: UTF-8 was
//! checked once.

use std::borrow::Cow;

use serde_json::Number;

use super::doc::{Doc, plain_len};

/// serde_json's own nesting limit (127 levels are read, 128 are refused):
/// the reader's recursion stays bounded.
const MAX_DEPTH: u32 = 128;

/// What to build below one value.
pub trait Keep: Copy {
    /// What is kept below `key` of an object, `None` to skip its value.
    fn child(self, key: &str) -> Option<Self>;
}

/// Why a body is not JSON, and where.
#[derive(Debug, thiserror::Error)]
#[error("{what} at byte {at}")]
pub struct JsonError {
    what: &'static str,
    at: usize,
}

/// Parses `text` as one JSON value, building what `keep` keeps.
pub fn parse<K: Keep>(text: &str, keep: K) -> Result<Doc<'_>, JsonError> {
    let mut r = Reader {
        text,
        b: text.as_bytes(),
        pos: 0,
        depth: 0,
        items: Vec::new(),
        entries: Vec::new(),
    };
    let value = r.value(keep)?;
    r.whitespace();
    if r.pos != r.b.len() {
        return Err(r.error("trailing characters"));
    }
    Ok(value)
}

/// A byte's class inside a string: plain, the end, an escape, or forbidden.
const PLAIN: u8 = 0;
const QUOTE: u8 = 1;
const BACKSLASH: u8 = 2;
const CONTROL: u8 = 3;

static STRING_CLASS: [u8; 256] = {
    let mut t = [PLAIN; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = CONTROL;
        i += 1;
    }
    t[b'"' as usize] = QUOTE;
    t[b'\\' as usize] = BACKSLASH;
    t
};

struct Reader<'a> {
    text: &'a str,
    b: &'a [u8],
    pos: usize,
    depth: u32,
    /// The members of the arrays and objects being read, innermost last:
    /// each is moved out into a list of its own size when it closes, so no
    /// list grows by reallocating.
    items: Vec<Doc<'a>>,
    entries: Vec<(Cow<'a, str>, Doc<'a>)>,
}

impl<'a> Reader<'a> {
    fn error(&self, what: &'static str) -> JsonError {
        JsonError { what, at: self.pos }
    }

    fn whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next byte after whitespace, not consumed.
    fn peek(&mut self) -> Result<u8, JsonError> {
        self.whitespace();
        self.b
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.error("unexpected end of input"))
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), JsonError> {
        if self.peek()? != byte {
            return Err(self.error(what));
        }
        self.pos += 1;
        Ok(())
    }

    fn nest(&mut self) -> Result<(), JsonError> {
        self.depth += 1;
        if self.depth >= MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        self.pos += 1;
        Ok(())
    }

    fn value<K: Keep>(&mut self, keep: K) -> Result<Doc<'a>, JsonError> {
        match self.peek()? {
            b'{' => self.object(keep),
            b'[' => self.array(keep),
            b'"' => Ok(Doc::String(self.string()?)),
            b't' => self.literal("true", Doc::Bool(true)),
            b'f' => self.literal("false", Doc::Bool(false)),
            b'n' => self.literal("null", Doc::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(self.error("expected a value")),
        }
    }

    fn object<K: Keep>(&mut self, keep: K) -> Result<Doc<'a>, JsonError> {
        let start = self.entries.len();
        self.members(b'}', |r| {
            let key = r.key(Self::string)?;
            match keep.child(&key) {
                Some(k) => {
                    let v = r.value(k)?;
                    r.entries.push((key, v));
                }
                None => r.skip()?,
            }
            Ok(())
        })?;
        Ok(Doc::object(self.entries.split_off(start)))
    }

    fn array<K: Keep>(&mut self, keep: K) -> Result<Doc<'a>, JsonError> {
        let start = self.items.len();
        self.members(b']', |r| {
            let v = r.value(keep)?;
            r.items.push(v);
            Ok(())
        })?;
        Ok(Doc::Array(self.items.split_off(start)))
    }

    /// Reads the object or array at `pos` (its opening bracket) up to
    /// `close`, calling `member` for each of its members.
    fn members(
        &mut self,
        close: u8,
        mut member: impl FnMut(&mut Self) -> Result<(), JsonError>,
    ) -> Result<(), JsonError> {
        self.nest()?;
        if self.peek()? == close {
            self.pos += 1;
        } else {
            loop {
                member(self)?;
                match self.peek()? {
                    b',' => self.pos += 1,
                    b if b == close => {
                        self.pos += 1;
                        break;
                    }
                    _ if close == b'}' => return Err(self.error("expected `,` or `}`")),
                    _ => return Err(self.error("expected `,` or `]`")),
                }
            }
        }
        self.depth -= 1;
        Ok(())
    }

    /// An object's key, read by `read`, and its colon. A skipped object's
    /// keys are only checked (`string_end`), never unescaped: `managedFields`
    /// is full of escaped keys (`k:{\"name\":\"app\"}`).
    fn key<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, JsonError>,
    ) -> Result<T, JsonError> {
        if self.peek()? != b'"' {
            return Err(self.error("expected a key"));
        }
        let key = read(self)?;
        self.expect(b':', "expected `:`")?;
        Ok(key)
    }

    /// Checks one value and moves past it, building nothing.
    fn skip(&mut self) -> Result<(), JsonError> {
        match self.peek()? {
            b'{' => self.members(b'}', |r| {
                r.key(Self::string_end)?;
                r.skip()
            }),
            b'[' => self.members(b']', Self::skip),
            b'"' => self.string_end().map(|_| ()),
            b't' => self.word("true"),
            b'f' => self.word("false"),
            b'n' => self.word("null"),
            b'-' | b'0'..=b'9' => self.number_end(),
            _ => Err(self.error("expected a value")),
        }
    }

    fn word(&mut self, word: &'static str) -> Result<(), JsonError> {
        if self.b[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.error("expected a value"))
        }
    }

    fn literal(&mut self, word: &'static str, v: Doc<'a>) -> Result<Doc<'a>, JsonError> {
        self.word(word).map(|()| v)
    }

    /// Moves past the string at `pos` (its opening quote), checking its
    /// escapes; whether it had any. Inlined: it runs for every string and
    /// key, most of them a few bytes long, and a call cost as much as the
    /// scan.
    #[inline(always)]
    fn string_end(&mut self) -> Result<bool, JsonError> {
        self.pos += 1;
        let mut escaped = false;
        loop {
            self.pos += plain_len(&self.b[self.pos..]);
            let Some(&byte) = self.b.get(self.pos) else {
                return Err(self.error("unterminated string"));
            };
            match STRING_CLASS[byte as usize] {
                PLAIN => self.pos += 1,
                QUOTE => {
                    self.pos += 1;
                    return Ok(escaped);
                }
                BACKSLASH => {
                    escaped = true;
                    self.escape(None)?;
                }
                _ => return Err(self.error("control character in string")),
            }
        }
    }

    /// The string at `pos`, borrowed from the input unless it had escapes.
    fn string(&mut self) -> Result<Cow<'a, str>, JsonError> {
        let start = self.pos + 1;
        let escaped = self.string_end()?;
        let raw = &self.text[start..self.pos - 1];
        if !escaped {
            return Ok(Cow::Borrowed(raw));
        }
        // Read again, unescaping: strings with escapes are rare in pods.
        let end = self.pos;
        self.pos = start;
        let mut out = String::with_capacity(raw.len());
        let mut plain = start;
        while self.pos < end - 1 {
            if self.b[self.pos] == b'\\' {
                out.push_str(&self.text[plain..self.pos]);
                self.escape(Some(&mut out))?;
                plain = self.pos;
            } else {
                self.pos += 1;
            }
        }
        out.push_str(&self.text[plain..end - 1]);
        self.pos = end;
        Ok(Cow::Owned(out))
    }

    /// Checks the escape at `pos` (its backslash) and moves past it,
    /// appending what it stands for to `out` when there is one.
    fn escape(&mut self, out: Option<&mut String>) -> Result<(), JsonError> {
        let Some(&kind) = self.b.get(self.pos + 1) else {
            return Err(self.error("unterminated string"));
        };
        let simple = match kind {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let c = self.unicode()?;
                if let Some(s) = out {
                    s.push(c);
                }
                return Ok(());
            }
            _ => return Err(self.error("invalid escape")),
        };
        self.pos += 2;
        if let Some(s) = out {
            s.push(simple);
        }
        Ok(())
    }

    /// A `\uXXXX` escape at `pos`, with its low surrogate when it is a high
    /// one; a lone surrogate is an error, as in serde_json.
    fn unicode(&mut self) -> Result<char, JsonError> {
        let high = self.hex4(self.pos + 2)?;
        self.pos += 6;
        let code = match high {
            0xD800..=0xDBFF => {
                if self.b.get(self.pos) != Some(&b'\\') || self.b.get(self.pos + 1) != Some(&b'u') {
                    return Err(self.error("lone leading surrogate in hex escape"));
                }
                let low = self.hex4(self.pos + 2)?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(self.error("lone leading surrogate in hex escape"));
                }
                self.pos += 6;
                0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(self.error("lone trailing surrogate in hex escape")),
            _ => high,
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid unicode escape"))
    }

    fn hex4(&self, at: usize) -> Result<u32, JsonError> {
        let digits = self
            .b
            .get(at..at + 4)
            .ok_or_else(|| self.error("unterminated string"))?;
        digits.iter().try_fold(0u32, |n, &d| {
            let v = (d as char)
                .to_digit(16)
                .ok_or_else(|| self.error("invalid unicode escape"))?;
            Ok(n * 16 + v)
        })
    }

    /// Moves past the number at `pos`, checking its grammar.
    fn number_end(&mut self) -> Result<(), JsonError> {
        let digits = |r: &mut Reader<'_>| {
            let start = r.pos;
            while r.b.get(r.pos).is_some_and(u8::is_ascii_digit) {
                r.pos += 1;
            }
            r.pos > start
        };
        if self.b[self.pos] == b'-' {
            self.pos += 1;
        }
        match self.b.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(self.error("invalid number")),
        }
        if self.b.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if !digits(self) {
                return Err(self.error("invalid number"));
            }
        }
        if let Some(b'e' | b'E') = self.b.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.b.get(self.pos) {
                self.pos += 1;
            }
            if !digits(self) {
                return Err(self.error("invalid number"));
            }
        }
        Ok(())
    }

    /// A number, read by serde_json itself once its grammar is checked, so
    /// integers, floats and their range are exactly what `from_str` gives.
    fn number(&mut self) -> Result<Doc<'a>, JsonError> {
        let start = self.pos;
        self.number_end()?;
        serde_json::from_str::<Number>(&self.text[start..self.pos])
            .map(Doc::Number)
            .map_err(|_| JsonError {
                what: "number out of range",
                at: start,
            })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    #[derive(Clone, Copy)]
    struct All;
    impl Keep for All {
        fn child(self, _: &str) -> Option<All> {
            Some(All)
        }
    }

    /// Keeps key `a` of every object, skips the others.
    #[derive(Clone, Copy)]
    struct OnlyA;
    impl Keep for OnlyA {
        fn child(self, key: &str) -> Option<OnlyA> {
            (key == "a").then_some(OnlyA)
        }
    }

    fn only_a(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .filter(|(k, _)| *k == "a")
                    .map(|(k, v)| (k.clone(), only_a(v)))
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(only_a).collect()),
            other => other.clone(),
        }
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-c]{0,3}",
            any::<String>(),
            Just("\u{0}\u{1f}\"\\/\u{7f}\u{2028}\u{1F600}é".to_string()),
            // Long enough for the eight-byte scan, with what stops it anywhere.
            prop::collection::vec(
                prop::sample::select(vec!['a', '"', '\\', '\u{1}', '\u{1f}', ' ', 'é', '😀']),
                0..40
            )
            .prop_map(|chars| chars.into_iter().collect()),
        ]
    }

    fn number() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            prop::sample::select(vec![0.5, -0.25, 1e3, 2.5e-3, 1.0e300, -0.0, 12.0])
                .prop_map(|f| json!(f)),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            number(),
            text().prop_map(Value::String),
        ];
        leaf.prop_recursive(5, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![Just("a".to_string()), text()],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn reads_what_serde_json_reads(v in value(), pretty in any::<bool>()) {
            let text = if pretty {
                serde_json::to_string_pretty(&v).unwrap()
            } else {
                serde_json::to_string(&v).unwrap()
            };
            let expected: Value = serde_json::from_str(&text).unwrap();
            let doc = parse(&text, All).unwrap();
            prop_assert_eq!(&doc.to_value(), &expected);
            // Sorted as a `Map` iterates, so equal documents are equal.
            prop_assert_eq!(&doc, &Doc::from(&expected));
            prop_assert_eq!(parse(&text, OnlyA).unwrap().to_value(), only_a(&expected));
        }

        #[test]
        fn refuses_what_serde_json_refuses(
            v in value(),
            at in any::<prop::sample::Index>(),
            edit in 0..3u8,
            byte in prop::sample::select(b"{}[],:\"\\ 0-.eE+tfnu\x01x".to_vec()),
        ) {
            let mut bytes = serde_json::to_vec(&v).unwrap();
            let i = at.index(bytes.len() + 1);
            match edit {
                0 if i < bytes.len() => { bytes.remove(i); }
                1 => bytes.insert(i, byte),
                _ if i < bytes.len() => bytes[i] = byte,
                _ => bytes.push(byte),
            }
            let Ok(text) = std::str::from_utf8(&bytes) else { return Ok(()) };
            let theirs = serde_json::from_str::<Value>(text);
            let ours = parse(text, All);
            prop_assert_eq!(ours.is_ok(), theirs.is_ok(), "{:?}: {:?} {:?}", text, ours, theirs);
            if let (Ok(ours), Ok(theirs)) = (ours, theirs) {
                prop_assert_eq!(ours.to_value(), theirs);
            }
            // Skipping checks as strictly as building, but for the range of
            // numbers, which only building needs (as in serde_json).
            match (parse(text, OnlyA), parse(text, All)) {
                (Ok(_), Err(e)) => prop_assert_eq!(e.what, "number out of range"),
                (skipped, built) => prop_assert_eq!(skipped.is_ok(), built.is_ok()),
            }
        }
    }

    #[test]
    fn nesting_is_bounded_as_in_serde_json() {
        for depth in [126, 127, 128, 100_000] {
            let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let theirs = serde_json::from_str::<Value>(&text).is_ok();
            assert_eq!(parse(&text, All).is_ok(), theirs, "depth {depth}");
            let skipped = format!("{{\"b\":{text}}}");
            let theirs = serde_json::from_str::<Value>(&skipped).is_ok();
            assert_eq!(
                parse(&skipped, OnlyA).is_ok(),
                theirs,
                "skipped, depth {depth}"
            );
        }
    }

    #[test]
    fn escapes_and_numbers_read_as_serde_json_reads_them() {
        for text in [
            r#""\ud83d\ude00 \u00e9 \n\t\"\\\/\b\f\r""#,
            r#""\ud83d""#,
            r#""\ude00""#,
            r#""\ud83dx""#,
            r#""\u12""#,
            r#""\x""#,
            "-0",
            "1e400",
            "-1e400",
            "18446744073709551616",
            "-9223372036854775809",
            "01",
            "1.",
            ".5",
            "+1",
            "1e",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "\"a",
            "tru",
            "nulll",
            " [ 1 , 2 ] ",
            r#"{"b":1,"a":{"x":1},"b":2,"a":[3]}"#,
        ] {
            let theirs = serde_json::from_str::<Value>(text);
            let ours = parse(text, All);
            assert_eq!(ours.is_ok(), theirs.is_ok(), "{text}: {ours:?} {theirs:?}");
            if let (Ok(ours), Ok(theirs)) = (ours, theirs) {
                assert_eq!(ours, Doc::from(&theirs), "{text}");
            }
        }
    }
}
