//! A token's claims, parsed once into a form that rules, headers and the audit log can query
//! by name without touching JSON again.
//!
//! The claims of a cached token live as long as the token does, so they are kept compact:
//! one buffer holding the decoded payload as it arrived (every name and plain value is a
//! span of it), then the few texts that are not (a string with escapes, a number written in
//! another form), then whatever the verifier appends while the set is a [`ClaimsDraft`] (the
//! parts of the token the cache compares, derived header values), plus a sorted index of
//! 12-byte slots. A GitHub token's 35 claims take ~1.1 KB of buffer and 420 bytes of index,
//! where one `String` per name and value took ~4 KB; and identity headers share the buffer
//! instead of copying values.

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

    /// Where the span starts, when it starts anywhere (see [`Span::of`]).
    pub fn start(self) -> Option<u32> {
        (self.start != u32::MAX).then_some(self.start)
    }

    /// The span as a range of `buf`, when it lies inside it.
    pub fn range_in(self, buf: &[u8]) -> Option<std::ops::Range<usize>> {
        let range = self.range();
        (range.end <= buf.len()).then_some(range)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The value is a text.
    Text,
    /// The value is a run of `items`.
    List,
    Other,
}

/// One claim, sorted by name: 12 bytes. Names and values are at most 64 KiB, which a
/// request head of 64 KiB cannot exceed (a longer one refuses the payload), and the kind
/// rides in the top bits of the value's start, which is below 1 GiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    name_start: u32,
    /// The kind in the top two bits, then where the value starts (in the buffer for a text,
    /// in `items` for a list).
    value_start: u32,
    name_len: u16,
    value_len: u16,
}

const KIND_SHIFT: u32 = 30;
const START_MASK: u32 = (1 << KIND_SHIFT) - 1;

impl Slot {
    fn new(name: Span, kind: Kind, value: Span) -> Result<Slot, ClaimsError> {
        let fits = |start: u32| start <= START_MASK;
        match (u16::try_from(name.len), u16::try_from(value.len)) {
            (Ok(name_len), Ok(value_len)) if fits(name.start) && fits(value.start) => Ok(Slot {
                name_start: name.start,
                value_start: (kind as u32) << KIND_SHIFT | value.start,
                name_len,
                value_len,
            }),
            _ => Err(ClaimsError::TooLarge),
        }
    }

    fn name(&self) -> Span {
        Span {
            start: self.name_start,
            len: u32::from(self.name_len),
        }
    }

    fn kind(&self) -> Kind {
        match self.value_start >> KIND_SHIFT {
            0 => Kind::Text,
            1 => Kind::List,
            _ => Kind::Other,
        }
    }

    fn value(&self) -> Span {
        Span {
            start: self.value_start & START_MASK,
            len: u32::from(self.value_len),
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

/// A span's bytes (empty if out of range, which no span built here is).
fn bytes_at(buf: &[u8], span: Span) -> &[u8] {
    buf.get(span.range()).unwrap_or_default()
}

/// A span's text. Every span was cut from parsed JSON text or a `String` at char
/// boundaries, so this never falls back to the empty string in practice.
fn text_at(buf: &[u8], span: Span) -> &str {
    buf.get(span.range())
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .unwrap_or_default()
}

/// The claim set of one token. Two sets are equal when they hold the same names and
/// values, however their buffers are laid out.
///
/// `B` is the buffer: [`Bytes`] once built (header values share it), a `Vec` while the
/// verifier still appends to it ([`ClaimsDraft`]).
#[derive(Debug, Clone, Default)]
pub struct Claims<B = Bytes> {
    buf: B,
    slots: Box<[Slot]>,
    items: Box<[Span]>,
}

/// Claims whose buffer still grows: what verification appends after the payload (the
/// parts of the token the cache compares, derived header values) goes into the same
/// allocation.
pub type ClaimsDraft = Claims<Vec<u8>>;

impl<B: AsRef<[u8]>, C: AsRef<[u8]>> PartialEq<Claims<C>> for Claims<B> {
    fn eq(&self, other: &Claims<C>) -> bool {
        self.iter().eq(other.iter())
    }
}

impl<B: AsRef<[u8]>> Eq for Claims<B> {}

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
    /// A name or value over 64 KiB, or a list of more than 65 535 items: more than a
    /// request head can carry.
    TooLarge,
}

impl std::fmt::Display for ClaimsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClaimsError::NotAnObject(error) => {
                write!(f, "the payload is not a JSON object: {error}")
            }
            ClaimsError::DuplicateName => f.write_str("a claim name appears twice"),
            ClaimsError::TooLarge => f.write_str("a claim name or value is over 64 KiB"),
        }
    }
}

/// A parsed payload: the claims (still open for appending), and the JSON values of the
/// registered claims that the time and type checks read (SPEC §3 step 6).
#[derive(Debug)]
pub struct ParsedPayload {
    pub claims: ClaimsDraft,
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

impl ClaimsDraft {
    /// Parses a decoded JWT payload: a JSON object with unique member names. The payload's
    /// allocation becomes the buffer.
    pub fn parse(payload: Vec<u8>) -> Result<ParsedPayload, ClaimsError> {
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
        buf.append(&mut builder.extra);
        let mut slots = builder.slots;
        // Byte order is `str` order for UTF-8, without checking the bytes on each compare.
        slots.sort_unstable_by(|a, b| bytes_at(&buf, a.name()).cmp(bytes_at(&buf, b.name())));
        if slots
            .windows(2)
            .any(|pair| bytes_at(&buf, pair[0].name()) == bytes_at(&buf, pair[1].name()))
        {
            return Err(ClaimsError::DuplicateName);
        }
        Ok(ParsedPayload {
            claims: Claims {
                buf,
                slots: slots.into_boxed_slice(),
                items: builder.items.into_boxed_slice(),
            },
            registered: Registered(registered),
        })
    }

    /// Appends bytes after the claims; their span, for reading them back once built.
    pub fn push(&mut self, bytes: &[u8]) -> Span {
        let span = Span::of(self.buf.len(), bytes.len());
        self.buf.extend_from_slice(bytes);
        span
    }

    /// The finished set, its buffer shrunk to fit (one allocation, shared by header values).
    pub fn finish(self) -> Claims {
        Claims {
            buf: Bytes::from(self.buf.into_boxed_slice()),
            slots: self.slots,
            items: self.items,
        }
    }
}

impl Claims {
    /// Builds the set from a JSON object (tests, `explain`): the same form a payload gets.
    pub fn from_json_object(object: &serde_json::Map<String, serde_json::Value>) -> Claims {
        // A map serializes, and its serialization parses with unique names.
        serde_json::to_vec(object)
            .ok()
            .and_then(|json| ClaimsDraft::parse(json).ok())
            .map_or_else(Claims::default, |parsed| parsed.claims.finish())
    }

    /// A copy still open for appending (for `explain`, which builds header values for a
    /// set it does not own).
    pub fn to_draft(&self) -> ClaimsDraft {
        Claims {
            buf: self.buf.to_vec(),
            slots: self.slots.clone(),
            items: self.items.clone(),
        }
    }

    /// The bytes of a span of this set's buffer, shared.
    pub fn shared(&self, span: Span) -> Bytes {
        span.range_in(&self.buf)
            .map_or_else(Bytes::new, |range| self.buf.slice(range))
    }
}

impl<B: AsRef<[u8]>> Claims<B> {
    pub fn get(&self, name: &str) -> Option<ClaimValue<'_>> {
        self.slot(name).map(|slot| self.value(slot))
    }

    fn slot(&self, name: &str) -> Option<&Slot> {
        let buf = self.buf.as_ref();
        let index = self
            .slots
            .binary_search_by(|slot| bytes_at(buf, slot.name()).cmp(name.as_bytes()))
            .ok()?;
        self.slots.get(index)
    }

    fn value(&self, slot: &Slot) -> ClaimValue<'_> {
        let buf = self.buf.as_ref();
        match slot.kind() {
            Kind::Text => ClaimValue::Text(text_at(buf, slot.value())),
            Kind::List => ClaimValue::List(ClaimList {
                buf,
                items: self.items.get(slot.value().range()).unwrap_or_default(),
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
        (slot.kind() == Kind::Text).then_some(slot.value())
    }

    /// The bytes of a span of this set's buffer.
    pub fn bytes(&self, span: Span) -> &[u8] {
        bytes_at(self.buf.as_ref(), span)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, ClaimValue<'_>)> {
        self.slots
            .iter()
            .map(|slot| (text_at(self.buf.as_ref(), slot.name()), self.value(slot)))
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Heap bytes held (buffer and index), for the memory figures.
    pub fn heap_bytes(&self) -> usize {
        self.buf.as_ref().len()
            + std::mem::size_of_val(&*self.slots)
            + std::mem::size_of_val(&*self.items)
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
        self.slots.push(Slot::new(name, kind, value)?);
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
        let mut draft = ClaimsDraft::parse(payload.to_vec()).expect("object").claims;
        let tail = draft.push(b"tail");
        let claims = &draft.finish();
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
        assert_eq!(claims.bytes(tail), b"tail");
        assert_eq!(&claims.shared(tail)[..], b"tail");
        let names: Vec<&str> = claims.iter().map(|(name, _)| name).collect();
        assert_eq!(names, ["big", "list", "n", "neg", "ref", "z"]);
    }

    #[test]
    fn duplicates_and_non_objects_are_refused() {
        assert_eq!(
            ClaimsDraft::parse(br#"{"a":1,"b":2,"a":3}"#.to_vec()).map(|_| ()),
            Err(ClaimsError::DuplicateName)
        );
        // An escape cannot hide a duplicate.
        assert_eq!(
            ClaimsDraft::parse(br#"{"aud":"x","\u0061ud":"y"}"#.to_vec()).map(|_| ()),
            Err(ClaimsError::DuplicateName)
        );
        for bad in [&b"[1]"[..], b"\"s\"", b"{", b"", b"{\"a\":1} x", b"\xff"] {
            assert!(ClaimsDraft::parse(bad.to_vec()).is_err(), "{bad:?}");
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
            assert!(ClaimsDraft::parse(bad.into()).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_and_values_over_64_kib_are_refused_not_cut() {
        let long = "x".repeat(70_000);
        for payload in [format!(r#"{{"{long}":1}}"#), format!(r#"{{"a":"{long}"}}"#)] {
            assert_eq!(
                ClaimsDraft::parse(payload.into_bytes()).map(|_| ()),
                Err(ClaimsError::TooLarge)
            );
        }
        let fits = "x".repeat(65_535);
        let parsed = ClaimsDraft::parse(format!(r#"{{"a":"{fits}"}}"#).into_bytes()).expect("fits");
        assert_eq!(parsed.claims.text("a").map(str::len), Some(65_535));
    }

    #[test]
    fn registered_claims_keep_their_json_type() {
        let parsed =
            ClaimsDraft::parse(br#"{"exp":5,"aud":["a"],"other":1}"#.to_vec()).expect("object");
        assert_eq!(parsed.registered.get("exp"), Some(&serde_json::json!(5)));
        assert_eq!(
            parsed.registered.get("aud"),
            Some(&serde_json::json!(["a"]))
        );
        assert_eq!(parsed.registered.get("other"), None);
    }

    #[test]
    fn a_text_span_shares_the_claim_without_a_copy() {
        let claims = &ClaimsDraft::parse(br#"{"repository":"acme/app","aud":["a"]}"#.to_vec())
            .expect("object")
            .claims
            .finish();
        let span = claims.text_span("repository").expect("a text claim");
        assert_eq!(&claims.shared(span)[..], b"acme/app");
        assert_eq!(claims.text_span("aud"), None, "a list is not one text");
        assert_eq!(claims.text_span("absent"), None);
    }
}
