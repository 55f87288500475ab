//! Condition matching: globs (checked against a reference implementation: the glob
//! translated to an anchored `regex` with every literal character escaped), anchored
//! regexes (checked against `\A(?:…)\z`), and whole condition values read from TOML
//! (`Matcher::from_toml`), including the round trip through their TOML display.
#![no_main]

use arbitrary::Arbitrary;
use jobgate::auth::claims::Claims;
use jobgate::config::rules::{AnchoredRegex, CompiledRule, Condition, Glob, Matcher};
use libfuzzer_sys::fuzz_target;
use regex::RegexBuilder;

#[derive(Arbitrary, Debug)]
struct Case {
    pattern: String,
    texts: Vec<String>,
    /// Right-hand side of `v = …` in TOML: a condition value as an operator writes it.
    toml_value: String,
}

/// The glob as an anchored regex: `*` any run of characters (newlines too), `?` exactly
/// one character, everything else itself.
fn reference(pattern: &str) -> Option<regex::Regex> {
    let mut source = String::from(r"\A(?s:");
    for c in pattern.chars() {
        match c {
            '*' => source.push_str(".*"),
            '?' => source.push('.'),
            other => source.push_str(&regex::escape(other.encode_utf8(&mut [0; 4]))),
        }
    }
    source.push_str(r")\z");
    RegexBuilder::new(&source)
        .size_limit(1 << 24)
        .dfa_size_limit(1 << 24)
        .build()
        .ok()
}

fuzz_target!(|case: Case| {
    let texts: Vec<&str> = case
        .texts
        .iter()
        .map(String::as_str)
        .chain([case.pattern.as_str(), ""])
        .take(8)
        .collect();

    // Globs against the reference.
    let glob = Glob::new(&case.pattern);
    let expected = reference(&case.pattern);
    for text in &texts {
        let got = glob.matches(text);
        if let Some(expected) = &expected {
            assert_eq!(
                got,
                expected.is_match(text),
                "glob {:?} on {:?}: jobgate says {got}",
                case.pattern,
                text
            );
        }
        if got {
            assert!(
                text.starts_with(glob.fixed_prefix()),
                "a match without the fixed prefix"
            );
        }
        if glob.is_literal() {
            assert_eq!(got, *text == case.pattern, "a literal glob is equality");
        }
    }

    // The pattern as a regex: anchored at both ends, whatever the pattern does.
    if let Ok(anchored) = AnchoredRegex::new(&case.pattern) {
        let reference = RegexBuilder::new(&format!(r"\A(?:{})\z", case.pattern))
            .size_limit(1 << 24)
            .dfa_size_limit(1 << 24)
            .build();
        if let Ok(reference) = reference {
            for text in &texts {
                assert_eq!(
                    anchored.is_match(text),
                    reference.is_match(text),
                    "regex {:?} on {:?}",
                    case.pattern,
                    text
                );
            }
        }
    }

    // A condition value as written in TOML.
    let Ok(table) = format!("v = {}", case.toml_value).parse::<toml::Table>() else {
        return;
    };
    let Some(value) = table.get("v") else {
        return;
    };
    let Ok(matcher) = Matcher::from_toml(value) else {
        return;
    };
    let results: Vec<bool> = texts
        .iter()
        .map(|text| matcher.matches_text(text))
        .collect();
    if matcher.is_literal() {
        // A literal condition matches at most the values it lists.
        for (text, matched) in texts.iter().zip(&results) {
            if *matched {
                let written = format!("v = {matcher}");
                assert!(
                    written.contains(&format!("{text:?}")) || written.contains(*text),
                    "literal {matcher} matched {text:?}"
                );
            }
        }
    }
    // Display writes the value as TOML: when that parses back, it matches the same texts.
    if let Ok(again) = format!("v = {matcher}").parse::<toml::Table>()
        && let Some(Ok(again)) = again.get("v").map(Matcher::from_toml)
    {
        for (text, matched) in texts.iter().zip(&results) {
            assert_eq!(
                again.matches_text(text),
                *matched,
                "{matcher} does not read back as itself"
            );
        }
    }
    // Through a rule, on claims holding each text as a string and in a list.
    let mut object = serde_json::Map::new();
    object.insert(
        "c".into(),
        serde_json::json!(texts.first().copied().unwrap_or("")),
    );
    object.insert("l".into(), serde_json::json!(texts));
    let claims = Claims::from_json_object(&object);
    let rule = CompiledRule::new(vec![Condition::new("c", matcher.clone())]);
    assert_eq!(
        rule.matches(&claims),
        results.first().copied().unwrap_or(false)
    );
    let list = Condition::new("l", matcher.clone());
    assert_eq!(list.matches(&claims), results.iter().any(|m| *m));
    assert!(!Condition::new("absent", matcher).matches(&claims));
});
