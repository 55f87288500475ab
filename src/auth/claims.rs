//! A token's claims, parsed once into a form that rules, headers and the audit log can query
//! by name without touching JSON again.
//!
//! The claims of a cached token live as long as the token does, so they are kept compact:
//! one buffer holding the decoded payload as it arrived (every name and plain value is a
//! span of it), then the few texts that are not (a string with escapes, a number written in
//! another form), then whatever the caller appends (the cache keeps the token's signature
//! there), plus a sorted index of spans. A GitHub token's 35 claims take ~1.1 KB of buffer
//! and 560 bytes of index, where one `String` per name and value took ~4 KB; and identity
//! headers can share the buffer instead of copying values.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

/// Where a text sits in a [`Claims`] buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    start: u32,
    len: u32,
}

impl Span {
    fn range(self) -> std::ops::Range<usize> {
        let start = self.start as usize;
        start..start + self.len as usize
    }

    /// The span of `len` bytes at `start`. Buffers hold one decoded token (bounded far
    /// below 4 GiB by `max_token_bytes` and the 64 KiB request head), so the casts saturate
    /// only on input no request can carry, and then the span reads as empty.
    pub fn of(start: usize, len: usize) -> Span {
        Span {
            start: u32::try_from(start).unwrap_or(u32::MAX),
            len: u32::try_from(len).unwrap_or(0),
        }
    }

    /// The span as a range of `buf`, when it lies inside it.
    pub fn range_in(self, buf: &[u8]) -> Option<std::ops::Range<usize>> {
        let range = self.range();
        (range.end <= buf.len()).then_some(range)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `value` is the text.
    Text,
    /// `value.start` is the first item in `items`, `value.len` their count.
    List,
    Other,
}

/// One claim: 16 bytes, sorted by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    name_start: u32,
    value: Span,
    /// Names are at most 64 KiB (a longer one is not indexed: no rule names one).
    name_len: u16,
    kind: Kind,
}

impl Slot {
    fn name(&self) -> Span {
        Span {
            start: self.name_start,
            len: u32::from(self.name_len),
        }
    }
}

/// One claim's value as rules see it. GitHub sends numbers as strings, and rules compare
/// integers and booleans as text (SPEC §2), so scalars are kept as their text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimValue<'a> {
    /// A string, number or boolean, as text.
    Text(&'a str),
    /// An array of scalars (`aud`), each as text.
    List(ClaimList<'a>),
    /// `null`, an object, or an array holding either: present, but no condition matches it.
    Other,
}

impl<'a> ClaimValue<'a> {
    /// The value when it is a single scalar.
    pub fn as_text(&self) -> Option<&'a str> {
        match self {
            ClaimValue::Text(text) => Some(text),
            _ => None,
        }
    }
}

/// The items of a list claim.
#[derive(Clone, Copy)]
pub struct ClaimList<'a> {
    buf: &'a [u8],
    items: &'a [Span],
}

impl<'a> ClaimList<'a> {
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        let buf = self.buf;
        self.items.iter().map(move |span| text_at(buf, *span))
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl std::fmt::Debug for ClaimList<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for ClaimList<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for ClaimList<'_> {}

/// A span's text. Every span was cut from parsed JSON text or a `String` at char
/// boundaries, so this never falls back to the empty string in practice.
fn text_at(buf: &[u8], span: Span) -> &str {
    buf.get(span.range())
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .unwrap_or_default()
}

/// The claim set of one token. Two sets are equal when they hold the same names and
/// values, however their buffers are laid out.
#[derive(Debug, Clone, Default)]
pub struct Claims {
    buf: Bytes,
    slots: Box<[Slot]>,
    items: Box<[Span]>,
}

impl PartialEq for Claims {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Claims {}

/// Why a payload is not a claim set (`malformed_token`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimsError {
    /// Not a JSON object, or not valid JSON (a lone surrogate escape, a number out of
    /// range, nesting deeper than 128 levels included).
    NotAnObject(String),
    /// Two members with one name: RFC 7519 §4 lets a parser take the last; another reader
    /// (an upstream given the token, a log pipeline) may take the first, and then
    /// `aud = [theirs, ours]` means two different things.
    DuplicateName,
}

impl std::fmt::Display for ClaimsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClaimsError::NotAnObject(error) => {
                write!(f, "the payload is not a JSON object: {error}")
            }
            ClaimsError::DuplicateName => f.write_str("a claim name appears twice"),
        }
    }
}

/// A parsed payload: the claims, and the JSON values of the registered claims that the
/// time and type checks read (SPEC §3 step 6), parsed on their own.
#[derive(Debug)]
pub struct ParsedPayload {
    pub claims: Claims,
    /// Spans of the byte strings passed as `tail` to [`Claims::parse`], in order.
    pub tail: Vec<Span>,
    pub registered: Registered,
}

/// The registered claims by name, as JSON values: what [`Claims`] keeps as text loses the
/// JSON type these checks need.
#[derive(Debug, Default)]
pub struct Registered(Vec<(&'static str, serde_json::Value)>);

impl Registered {
    pub const NAMES: [&'static str; 7] = ["aud", "exp", "iat", "iss", "jti", "nbf", "sub"];

    pub fn get(&self, name: &str) -> Option<&serde_json::Value> {
        self.0
            .iter()
            .find(|(registered, _)| *registered == name)
            .map(|(_, value)| value)
    }
}

impl Claims {
    /// Parses a decoded JWT payload: a JSON object with unique member names. `tail` is
    /// appended to the buffer after the claims (the caller gets their spans back), so that
    /// everything a verified token keeps is one allocation.
    pub fn parse(payload: Vec<u8>, tail: &[&[u8]]) -> Result<ParsedPayload, ClaimsError> {
        let mut builder = Builder::default();
        let registered = {
            let Members(members) = serde_json::from_slice(&payload).map_err(invalid)?;
            builder.slots.reserve_exact(members.len());
            let mut registered = Vec::new();
            for (name, value) in members {
                if let Some(known) = Registered::NAMES.iter().find(|known| **known == name) {
                    // The text came out of a parse, so it parses again.
                    if let Ok(json) = serde_json::from_str(value.get()) {
                        registered.push((*known, json));
                    }
                }
                builder.add(&payload, &name, value)?;
            }
            registered
        };
        let mut buf = payload;
        buf.reserve_exact(builder.extra.len() + tail.iter().map(|t| t.len()).sum::<usize>());
        buf.append(&mut builder.extra);
        let tail = tail
            .iter()
            .map(|bytes| {
                let span = Span::of(buf.len(), bytes.len());
                buf.extend_from_slice(bytes);
                span
            })
            .collect();
        let mut slots = builder.slots;
        slots.sort_unstable_by(|a, b| text_at(&buf, a.name()).cmp(text_at(&buf, b.name())));
        if slots
            .windows(2)
            .any(|pair| text_at(&buf, pair[0].name()) == text_at(&buf, pair[1].name()))
        {
            return Err(ClaimsError::DuplicateName);
        }
        Ok(ParsedPayload {
            claims: Claims {
                buf: Bytes::from(buf),
                slots: slots.into_boxed_slice(),
                items: builder.items.into_boxed_slice(),
            },
            tail,
            registered: Registered(registered),
        })
    }

    /// Builds the set from a JSON object (tests, `explain`): the same form a payload gets.
    pub fn from_json_object(object: &serde_json::Map<String, serde_json::Value>) -> Claims {
        // A map serializes, and its serialization parses with unique names.
        serde_json::to_vec(object)
            .ok()
            .and_then(|json| Claims::parse(json, &[]).ok())
            .map(|parsed| parsed.claims)
            .unwrap_or_default()
    }

    pub fn get(&self, name: &str) -> Option<ClaimValue<'_>> {
        self.slot(name).map(|slot| self.value(slot))
    }

    fn slot(&self, name: &str) -> Option<&Slot> {
        let index = self
            .slots
            .binary_search_by(|slot| text_at(&self.buf, slot.name()).cmp(name))
            .ok()?;
        self.slots.get(index)
    }

    fn value(&self, slot: &Slot) -> ClaimValue<'_> {
        match slot.kind {
            Kind::Text => ClaimValue::Text(text_at(&self.buf, slot.value)),
            Kind::List => ClaimValue::List(ClaimList {
                buf: &self.buf,
                items: self.items.get(slot.value.range()).unwrap_or_default(),
            }),
            Kind::Other => ClaimValue::Other,
        }
    }

    /// The claim's text when it is a scalar.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|value| value.as_text())
    }

    /// Where the claim's text is in the buffer, when it is a scalar: a header value can
    /// share it ([`Claims::shared`]) for a reference count instead of a copy.
    pub fn text_span(&self, name: &str) -> Option<Span> {
        let slot = self.slot(name)?;
        (slot.kind == Kind::Text).then_some(slot.value)
    }

    /// The bytes of a span of this set's buffer, shared.
    pub fn shared(&self, span: Span) -> Bytes {
        span.range_in(&self.buf)
            .map_or_else(Bytes::new, |range| self.buf.slice(range))
    }

    /// The bytes of a span of this set's buffer.
    pub fn bytes(&self, span: Span) -> &[u8] {
        self.buf.get(span.range()).unwrap_or_default()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, ClaimValue<'_>)> {
        self.slots
            .iter()
            .map(|slot| (text_at(&self.buf, slot.name()), self.value(slot)))
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Heap bytes held (buffer and index), for the memory figures.
    pub fn heap_bytes(&self) -> usize {
        self.buf.len() + std::mem::size_of_val(&*self.slots) + std::mem::size_of_val(&*self.items)
    }
}

/// The index being built while the payload is borrowed: texts that are not spans of the
/// payload go to `extra`, which lands right after it.
#[derive(Default)]
struct Builder {
    slots: Vec<Slot>,
    items: Vec<Span>,
    extra: Vec<u8>,
}

impl Builder {
    fn add(&mut self, payload: &[u8], name: &str, value: &RawValue) -> Result<(), ClaimsError> {
        let (kind, value) = match self.scalar(payload, value)? {
            Some(text) => (Kind::Text, text),
            None => match self.list(payload, value)? {
                Some(items) => (Kind::List, items),
                None => {
                    // Kept as "other", but it must still be JSON a full parse accepts
                    // (nesting depth, numbers in range, escapes), as every claim must.
                    serde_json::from_str::<serde_json::Value>(value.get()).map_err(invalid)?;
                    (Kind::Other, Span::of(0, 0))
                }
            },
        };
        let name = self.text(payload, name);
        let Ok(name_len) = u16::try_from(name.len) else {
            return Ok(());
        };
        self.slots.push(Slot {
            name_start: name.start,
            value,
            name_len,
            kind,
        });
        Ok(())
    }

    /// A text borrowed from the payload is a span of it; any other (unescaped) is copied
    /// to `extra`.
    fn text(&mut self, payload: &[u8], text: &str) -> Span {
        match offset_in(payload, text) {
            Some(start) => Span::of(start, text.len()),
            None => self.extra_text(payload, text),
        }
    }

    fn extra_text(&mut self, payload: &[u8], text: &str) -> Span {
        let span = Span::of(payload.len() + self.extra.len(), text.len());
        self.extra.extend_from_slice(text.as_bytes());
        span
    }

    /// A string, number or boolean as its text: a string without escapes and a number
    /// written as Rust would print it are spans of the payload. The parser that cut `value`
    /// out checked its structure, UTF-8 and control characters, not what an escape or a
    /// number means: those are parsed here, and refused when a full parse would refuse them.
    fn scalar(&mut self, payload: &[u8], value: &RawValue) -> Result<Option<Span>, ClaimsError> {
        let raw = value.get();
        let Some(first) = raw.as_bytes().first() else {
            return Ok(None);
        };
        Ok(Some(match first {
            b'"' => {
                let inner = &raw[1..raw.len() - 1];
                if inner.contains('\\') {
                    let unescaped: String = serde_json::from_str(raw).map_err(invalid)?;
                    self.extra_text(payload, &unescaped)
                } else {
                    self.text(payload, inner)
                }
            }
            b't' | b'f' => self.text(payload, raw),
            b'-' | b'0'..=b'9' => {
                // Plain integers of up to 19 digits print as written; anything else (a
                // float, an exponent, a big or negative number) as serde_json prints it.
                if raw.len() <= 19 && raw.bytes().all(|b| b.is_ascii_digit()) {
                    self.text(payload, raw)
                } else {
                    let number: serde_json::Number = serde_json::from_str(raw).map_err(invalid)?;
                    self.extra_text(payload, &number.to_string())
                }
            }
            _ => return Ok(None),
        }))
    }

    /// An array of scalars, as the span of its items in `items`; `None` for anything else.
    fn list(&mut self, payload: &[u8], value: &RawValue) -> Result<Option<Span>, ClaimsError> {
        if !value.get().starts_with('[') {
            return Ok(None);
        }
        let raw_items: Vec<&RawValue> = serde_json::from_str(value.get()).map_err(invalid)?;
        let first = self.items.len();
        for item in raw_items {
            match self.scalar(payload, item)? {
                Some(span) => self.items.push(span),
                None => {
                    self.items.truncate(first);
                    return Ok(None);
                }
            }
        }
        Ok(Some(Span::of(first, self.items.len() - first)))
    }
}

fn invalid(error: serde_json::Error) -> ClaimsError {
    ClaimsError::NotAnObject(error.to_string())
}

/// Where `text` starts in `buf`, when it is a slice of it.
fn offset_in(buf: &[u8], text: &str) -> Option<usize> {
    let start = (text.as_ptr() as usize).checked_sub(buf.as_ptr() as usize)?;
    (start + text.len() <= buf.len()).then_some(start)
}

/// A JSON object's members, names borrowed from the input where they have no escapes.
struct Members<'de>(Vec<(Cow<'de, str>, &'de RawValue)>);

/// A member name, borrowed when the parser can lend it.
struct Name<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Name<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a member name")
            }

            fn visit_borrowed_str<E>(self, name: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(name)))
            }

            fn visit_str<E>(self, name: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(name.to_owned())))
            }

            fn visit_string<E>(self, name: String) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(name)))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Members<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(32));
                while let Some((Name(name), value)) = map.next_entry::<Name, &RawValue>()? {
                    members.push((name, value));
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(claims: &Claims, name: &str) -> Option<Vec<String>> {
        match claims.get(name)? {
            ClaimValue::List(items) => Some(items.iter().map(str::to_owned).collect()),
            _ => None,
        }
    }

    #[test]
    fn scalars_become_text_and_arrays_lists() {
        let json = serde_json::json!({
            "run_attempt": "1", "run_id": 42, "ref_protected": true,
            "aud": ["a", "b"], "nested": {"x": 1}, "mixed": ["a", {"b": 1}], "nothing": null
        });
        let claims = Claims::from_json_object(json.as_object().expect("object"));
        assert_eq!(claims.text("run_attempt"), Some("1"));
        assert_eq!(claims.text("run_id"), Some("42"));
        assert_eq!(claims.text("ref_protected"), Some("true"));
        assert_eq!(list(&claims, "aud"), Some(vec!["a".into(), "b".into()]));
        assert_eq!(claims.get("nested"), Some(ClaimValue::Other));
        assert_eq!(claims.get("mixed"), Some(ClaimValue::Other));
        assert_eq!(claims.get("nothing"), Some(ClaimValue::Other));
        assert_eq!(claims.get("absent"), None);
        assert_eq!(claims.len(), 7);
    }

    #[test]
    fn escapes_and_number_forms_read_as_before() {
        let payload = br#"{"r\u0065f":"a\/b\"c","n":1e3,"neg":-0,"big":123456789012345678901,"z":0,"list":[1.50,"x\ty"]}"#;
        let parsed = Claims::parse(payload.to_vec(), &[b"tail"]).expect("object");
        let claims = &parsed.claims;
        assert_eq!(claims.text("ref"), Some("a/b\"c"));
        // As `serde_json::Number`'s `Display` prints them, like the `Value` form did.
        assert_eq!(claims.text("n"), Some("1000.0"));
        assert_eq!(claims.text("neg"), Some("-0.0"));
        assert_eq!(claims.text("big"), Some("1.2345678901234567e+20"));
        assert_eq!(claims.text("z"), Some("0"));
        assert_eq!(
            list(claims, "list"),
            Some(vec!["1.5".into(), "x\ty".into()])
        );
        assert_eq!(claims.bytes(parsed.tail[0]), b"tail");
        let names: Vec<&str> = claims.iter().map(|(name, _)| name).collect();
        assert_eq!(names, ["big", "list", "n", "neg", "ref", "z"]);
    }

    #[test]
    fn duplicates_and_non_objects_are_refused() {
        assert_eq!(
            Claims::parse(br#"{"a":1,"b":2,"a":3}"#.to_vec(), &[]).map(|_| ()),
            Err(ClaimsError::DuplicateName)
        );
        // An escape cannot hide a duplicate.
        assert_eq!(
            Claims::parse(br#"{"aud":"x","\u0061ud":"y"}"#.to_vec(), &[]).map(|_| ()),
            Err(ClaimsError::DuplicateName)
        );
        for bad in [&b"[1]"[..], b"\"s\"", b"{", b"", b"{\"a\":1} x", b"\xff"] {
            assert!(Claims::parse(bad.to_vec(), &[]).is_err(), "{bad:?}");
        }
        // What only a full parse finds, in a value of each kind.
        let deep = format!(r#"{{"a":{}1{}}}"#, "[".repeat(200), "]".repeat(200));
        for bad in [
            r#"{"a":"\udc00"}"#,
            r#"{"a":1e400}"#,
            r#"{"a":["x",1e400]}"#,
            r#"{"a":{"b":"\udc00"}}"#,
            r#"{"a":[{"b":-1e999}]}"#,
            deep.as_str(),
        ] {
            assert!(Claims::parse(bad.into(), &[]).is_err(), "{bad}");
        }
    }

    #[test]
    fn registered_claims_keep_their_json_type() {
        let parsed =
            Claims::parse(br#"{"exp":5,"aud":["a"],"other":1}"#.to_vec(), &[]).expect("object");
        assert_eq!(parsed.registered.get("exp"), Some(&serde_json::json!(5)));
        assert_eq!(
            parsed.registered.get("aud"),
            Some(&serde_json::json!(["a"]))
        );
        assert_eq!(parsed.registered.get("other"), None);
    }

    #[test]
    fn a_text_span_shares_the_claim_without_a_copy() {
        let parsed = Claims::parse(br#"{"repository":"acme/app","aud":["a"]}"#.to_vec(), &[])
            .expect("object");
        let claims = &parsed.claims;
        let span = claims.text_span("repository").expect("a text claim");
        assert_eq!(&claims.shared(span)[..], b"acme/app");
        assert_eq!(claims.text_span("aud"), None, "a list is not one text");
        assert_eq!(claims.text_span("absent"), None);
    }
}
