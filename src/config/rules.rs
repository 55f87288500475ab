//! Route rules as the config compiles them (SPEC §2): the condition values (glob, scalar,
//! anchored regex, any-of list), the rules they make up, and which rule of a route is which.
//!
//! A condition value is a glob string, an integer or boolean compared as text, a
//! `{ regex = "…" }` table (anchored) or an array of those (any-of). Globs are compiled into
//! a shape (literal, prefix, suffix, contains, anything, general) so that matching allocates
//! nothing and never runs a regex; general globs use the linear two-pointer wildcard
//! algorithm, so no pattern can make matching blow up.
//!
//! These types live in `config` because a compiled [`Config`](super::Config) holds them and
//! validation reasons about them (which conditions "pin the owner" for the public-GitHub
//! safety rule, GitHub's claim names). Matching a value's text is the pattern's own business
//! and stays here; matching a token's claims, and the allow/deny decision, is `policy`'s.

use std::fmt;

use regex::{Regex, RegexBuilder};

/// Compiled-size bound of one `{ regex = "…" }`: large enough for any sensible claim
/// pattern, small enough that a pathological one is refused at load instead of costing
/// memory on every worker.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// The claims GitHub Actions puts in its OIDC tokens (SPEC §2). A rule naming any other
/// claim on a GitHub-kind issuer is almost certainly a typo.
pub const GITHUB_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "actor",
    "actor_id",
    "base_ref",
    "check_run_id",
    "enterprise",
    "enterprise_id",
    "environment",
    "environment_node_id",
    "event_name",
    "head_ref",
    "job_workflow_ref",
    "job_workflow_sha",
    "ref",
    "ref_protected",
    "ref_type",
    "repository",
    "repository_id",
    "repository_owner",
    "repository_owner_id",
    "repository_visibility",
    "run_attempt",
    "run_id",
    "run_number",
    "runner_environment",
    "sha",
    "workflow",
    "workflow_ref",
    "workflow_sha",
];

/// Claims that pin the owner with an exact value (SPEC §2 safety rule).
const OWNER_LITERAL_CLAIMS: &[&str] = &[
    "repository_owner",
    "repository_owner_id",
    "repository_id",
    "enterprise",
    "enterprise_id",
];

/// Claims of the form `owner/…` that pin the owner when the glob's fixed start holds a `/`.
const OWNER_PATH_CLAIMS: &[&str] = &["repository", "job_workflow_ref", "sub"];

/// A glob: `*` any run of characters (`/` included), `?` one character, everything else
/// itself. Case-sensitive.
#[derive(Debug, Clone)]
pub struct Glob {
    pattern: Box<str>,
    shape: GlobShape,
}

/// The cheapest way to match a given glob, chosen once at compile time.
#[derive(Debug, Clone)]
enum GlobShape {
    /// No wildcard: equality.
    Literal,
    /// Only stars: matches everything, the empty string included.
    Anything,
    /// `abc*`: the literal part.
    Prefix(Box<str>),
    /// `*abc`.
    Suffix(Box<str>),
    /// `*abc*`.
    Contains(Box<str>),
    /// Anything else: the two-pointer wildcard matcher on the pattern.
    General,
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        Glob {
            pattern: pattern.into(),
            shape: GlobShape::of(pattern),
        }
    }

    /// The pattern as written.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// True when the pattern has no wildcard, so it matches exactly one value.
    pub fn is_literal(&self) -> bool {
        matches!(self.shape, GlobShape::Literal)
    }

    /// The text before the first `*` or `?`: every match starts with it.
    pub fn fixed_prefix(&self) -> &str {
        let end = self.pattern.find(['*', '?']).unwrap_or(self.pattern.len());
        &self.pattern[..end]
    }

    pub fn matches(&self, text: &str) -> bool {
        match &self.shape {
            GlobShape::Literal => text == &*self.pattern,
            GlobShape::Anything => true,
            GlobShape::Prefix(prefix) => text.starts_with(&**prefix),
            GlobShape::Suffix(suffix) => text.ends_with(&**suffix),
            GlobShape::Contains(middle) => text.contains(&**middle),
            GlobShape::General => wildcard_match(self.pattern.as_bytes(), text.as_bytes()),
        }
    }
}

impl GlobShape {
    fn of(pattern: &str) -> GlobShape {
        if !pattern.contains(['*', '?']) {
            return GlobShape::Literal;
        }
        if pattern.contains('?') {
            return GlobShape::General;
        }
        let starts = pattern.starts_with('*');
        let ends = pattern.ends_with('*');
        let middle = pattern.trim_matches('*');
        if middle.contains('*') {
            return GlobShape::General;
        }
        match (starts, ends, middle.is_empty()) {
            (_, _, true) => GlobShape::Anything,
            (false, true, false) => GlobShape::Prefix(middle.into()),
            (true, false, false) => GlobShape::Suffix(middle.into()),
            _ => GlobShape::Contains(middle.into()),
        }
    }
}

/// Classic linear-backtracking wildcard match: on a mismatch, only the most recent `*` is
/// retried, one character further on, so the cost is O(pattern × text) at worst and there is
/// no recursion.
///
/// Works on UTF-8 bytes: `*` and `?` are ASCII, so they never occur inside a multi-byte
/// character; literal characters compare byte for byte, and `?` and star retries step over
/// one whole character, which keeps `text_at` on a character boundary.
fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut pattern_at, mut text_at) = (0, 0);
    // (pattern index just after the last `*`, text index that star's run will end at next)
    let mut last_star: Option<(usize, usize)> = None;
    while text_at < text.len() {
        match pattern.get(pattern_at) {
            Some(b'*') => {
                pattern_at += 1;
                last_star = Some((pattern_at, text_at));
                continue;
            }
            Some(b'?') => {
                pattern_at += 1;
                text_at += utf8_len(text, text_at);
                continue;
            }
            Some(&byte) if byte == text[text_at] => {
                pattern_at += 1;
                text_at += 1;
                continue;
            }
            _ => {}
        }
        let Some((after_star, star_end)) = last_star else {
            return false;
        };
        let retry = star_end + utf8_len(text, star_end);
        last_star = Some((after_star, retry));
        pattern_at = after_star;
        text_at = retry;
    }
    pattern[pattern_at..].iter().all(|&byte| byte == b'*')
}

/// Length of the UTF-8 character starting at `at` (1 when `at` is not a leading byte, which
/// valid UTF-8 and the matcher's invariants never produce).
fn utf8_len(text: &[u8], at: usize) -> usize {
    let len = match text.get(at) {
        Some(&byte) if byte >= 0xF0 => 4,
        Some(&byte) if byte >= 0xE0 => 3,
        Some(&byte) if byte >= 0xC0 => 2,
        _ => 1,
    };
    len.min(text.len().saturating_sub(at)).max(1)
}

/// `{ regex = "…" }`: must match the whole claim value.
#[derive(Debug, Clone)]
pub struct AnchoredRegex {
    regex: Regex,
    source: Box<str>,
}

impl AnchoredRegex {
    /// Compiles `source` anchored at both ends, with a bounded compiled size. The error is a
    /// one-line explanation suitable for a config diagnostic.
    pub fn new(source: &str) -> Result<AnchoredRegex, String> {
        let build = |pattern: &str| {
            RegexBuilder::new(pattern)
                .size_limit(REGEX_SIZE_LIMIT)
                .dfa_size_limit(REGEX_SIZE_LIMIT)
                .build()
        };
        // The bare pattern first, so a syntax error quotes the operator's text rather than
        // our anchored wrapper; a bare pattern that compiles stays valid once wrapped.
        build(source).map_err(|error| regex_error(source, &error))?;
        let regex =
            build(&format!("^(?:{source})$")).map_err(|error| regex_error(source, &error))?;
        Ok(AnchoredRegex {
            regex,
            source: source.into(),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }
}

/// Turns `regex`'s multi-line error into one line that names the pattern and the fix.
fn regex_error(source: &str, error: &regex::Error) -> String {
    match error {
        regex::Error::CompiledTooBig(limit) => format!(
            "regex {source:?} is too large (over {limit} bytes compiled); simplify it or use a glob"
        ),
        _ => {
            let text = error.to_string();
            let reason = text
                .lines()
                .rev()
                .find(|line| !line.trim().is_empty())
                .unwrap_or("invalid syntax")
                .trim()
                .trim_start_matches("error: ");
            format!(
                "invalid regex {source:?}: {reason}; fix the pattern (Rust `regex` syntax, \
                 matched against the whole claim value)"
            )
        }
    }
}

/// How one condition matches one claim value.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// A TOML string.
    Glob(Glob),
    /// A TOML integer or boolean, as text (GitHub sends numbers as strings).
    Scalar(Box<str>),
    Regex(AnchoredRegex),
    /// A TOML array: any entry matches. Never empty, never nested.
    AnyOf(Vec<Matcher>),
}

impl Matcher {
    /// Compiles a condition value as written in the config. The error says what is wrong and
    /// what to write instead.
    pub fn from_toml(value: &toml::Value) -> Result<Matcher, String> {
        match value {
            toml::Value::Array(items) => {
                if items.is_empty() {
                    return Err("an empty list matches nothing; list at least one value \
                                or remove the condition"
                        .to_owned());
                }
                items
                    .iter()
                    .map(Matcher::single_from_toml)
                    .collect::<Result<Vec<_>, _>>()
                    .map(Matcher::AnyOf)
            }
            other => Matcher::single_from_toml(other),
        }
    }

    fn single_from_toml(value: &toml::Value) -> Result<Matcher, String> {
        match value {
            toml::Value::String(pattern) => Ok(Matcher::Glob(Glob::new(pattern))),
            toml::Value::Integer(number) => Ok(Matcher::Scalar(number.to_string().into())),
            toml::Value::Boolean(flag) => Ok(Matcher::Scalar(flag.to_string().into())),
            toml::Value::Table(table) => {
                let source = match table.get("regex") {
                    Some(toml::Value::String(source)) if table.len() == 1 => source,
                    _ => {
                        return Err(
                            "a condition table must be exactly { regex = \"…\" }".to_owned()
                        );
                    }
                };
                AnchoredRegex::new(source).map(Matcher::Regex)
            }
            toml::Value::Array(_) => {
                Err("lists cannot be nested; write one flat list of values".to_owned())
            }
            toml::Value::Float(_) => Err(
                "a float cannot be compared exactly; write the value as a string, e.g. \"1.5\""
                    .to_owned(),
            ),
            toml::Value::Datetime(_) => {
                Err("a date cannot be a condition; write the claim's value as a string".to_owned())
            }
        }
    }

    /// True when the value (or every entry) is exact: no wildcard, no regex.
    pub fn is_literal(&self) -> bool {
        match self {
            Matcher::Glob(glob) => glob.is_literal(),
            Matcher::Scalar(_) => true,
            Matcher::Regex(_) => false,
            Matcher::AnyOf(items) => items.iter().all(Matcher::is_literal),
        }
    }

    /// True when the value (or every entry) is a string whose text before the first
    /// wildcard contains a `/`, i.e. it fixes an `owner/…` path's owner. A regex never does.
    pub fn fixes_path_owner(&self) -> bool {
        match self {
            Matcher::Glob(glob) => glob.fixed_prefix().contains('/'),
            Matcher::Scalar(_) | Matcher::Regex(_) => false,
            Matcher::AnyOf(items) => items.iter().all(Matcher::fixes_path_owner),
        }
    }

    pub fn matches_text(&self, text: &str) -> bool {
        match self {
            Matcher::Glob(glob) => glob.matches(text),
            Matcher::Scalar(expected) => text == &**expected,
            Matcher::Regex(regex) => regex.is_match(text),
            Matcher::AnyOf(items) => items.iter().any(|item| item.matches_text(text)),
        }
    }
}

/// Displays the value as it was written in TOML: `"refs/tags/v*"`, `1`, `{ regex = "…" }`,
/// `["a", "b"]`.
impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Matcher::Glob(glob) => write!(f, "{:?}", glob.pattern()),
            Matcher::Scalar(text) => f.write_str(text),
            Matcher::Regex(regex) => write!(f, "{{ regex = {:?} }}", regex.source()),
            Matcher::AnyOf(items) => {
                f.write_str("[")?;
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
        }
    }
}

/// One `claim = value` line of a rule.
#[derive(Debug, Clone)]
pub struct Condition {
    pub claim: String,
    pub matcher: Matcher,
}

impl Condition {
    pub fn new(claim: &str, matcher: Matcher) -> Condition {
        Condition {
            claim: claim.to_owned(),
            matcher,
        }
    }

    /// SPEC §2 safety rule: a literal (or list of literals) on an owner or id claim, or a
    /// glob (or list of globs) whose fixed start holds a `/` on an `owner/…` claim. A regex
    /// never pins.
    pub fn pins_owner(&self) -> bool {
        let claim = self.claim.as_str();
        (OWNER_LITERAL_CLAIMS.contains(&claim) && self.matcher.is_literal())
            || (OWNER_PATH_CLAIMS.contains(&claim) && self.matcher.fixes_path_owner())
    }
}

/// One `[[route.allow]]` or `[[route.deny]]` table, compiled: it matches when all its
/// conditions do, so an empty rule matches every verified token.
#[derive(Debug, Clone, Default)]
pub struct CompiledRule {
    pub conditions: Vec<Condition>,
}

impl CompiledRule {
    pub fn new(conditions: Vec<Condition>) -> CompiledRule {
        CompiledRule { conditions }
    }

    /// True when one of the conditions pins the repository owner (SPEC §2 safety rule).
    pub fn pins_owner(&self) -> bool {
        self.conditions.iter().any(Condition::pins_owner)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    Allow,
    Deny,
}

/// Which rule of a route decided: `allow[0]`, `deny[2]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleRef {
    pub kind: RuleKind,
    /// Position among the route's rules of that kind, from 0, in file order.
    pub index: usize,
}

impl RuleRef {
    /// The audit log's name for the rule: `deploy.allow[0]`.
    pub fn label(&self, route: &str) -> String {
        format!("{route}.{self}")
    }
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            RuleKind::Allow => "allow",
            RuleKind::Deny => "deny",
        };
        write!(f, "{kind}[{}]", self.index)
    }
}

#[cfg(test)]
pub(crate) mod test_rules {
    //! Rules written as TOML values, for the tests of every module that matches them.
    use super::{CompiledRule, Condition, Matcher};

    /// `toml_value` as a rule condition, e.g. `"\"acme/*\""` or `"{ regex = \"…\" }"`.
    pub(crate) fn matcher(toml_value: &str) -> Matcher {
        let table: toml::Table =
            toml::from_str(&format!("v = {toml_value}")).expect("test value parses");
        Matcher::from_toml(&table["v"]).expect("test value compiles")
    }

    /// A rule of `(claim, TOML value)` conditions.
    pub(crate) fn rule(conditions: &[(&str, &str)]) -> CompiledRule {
        CompiledRule::new(
            conditions
                .iter()
                .map(|(claim, value)| Condition::new(claim, matcher(value)))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::test_rules::{matcher, rule};
    use super::*;

    fn glob(pattern: &str, text: &str) -> bool {
        let compiled = Glob::new(pattern);
        let fast = compiled.matches(text);
        // Every shape must agree with the general matcher.
        assert_eq!(
            fast,
            wildcard_match(pattern.as_bytes(), text.as_bytes()),
            "shape and general matcher disagree on {pattern:?} vs {text:?}"
        );
        fast
    }

    #[test]
    fn glob_literals_are_exact_and_case_sensitive() {
        assert!(glob("refs/heads/main", "refs/heads/main"));
        assert!(!glob("refs/heads/main", "refs/heads/Main"));
        assert!(!glob("refs/heads/main", "refs/heads/main2"));
        assert!(glob("", ""));
        assert!(!glob("", "x"));
    }

    #[test]
    fn glob_star_crosses_slashes() {
        assert!(glob("refs/tags/v*", "refs/tags/v1.2.3"));
        assert!(glob("refs/tags/v*", "refs/tags/v"));
        assert!(glob("refs/tags/v*", "refs/tags/v1/extra"));
        assert!(!glob("refs/tags/v*", "refs/tags/x1"));
        assert!(glob("*", ""));
        assert!(glob("*", "anything/at/all"));
        assert!(glob("**", "x"));
        assert!(glob(
            "*/deploy.yml@*",
            "acme/app/.github/workflows/deploy.yml@refs/heads/main"
        ));
        assert!(glob("*main", "refs/heads/main"));
        assert!(!glob("*main", "refs/heads/main2"));
        assert!(glob("*heads*", "refs/heads/main"));
        assert!(!glob("*tags*", "refs/heads/main"));
    }

    #[test]
    fn glob_multiple_stars_and_question_marks() {
        assert!(glob("a*b*c", "abc"));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(glob("a*b*c", "abcbc"));
        assert!(!glob("a*b*c", "aXXbYY"));
        assert!(glob("a*?", "ab"));
        assert!(!glob("a*?", "a"));
        assert!(glob("v?.?", "v1.2"));
        assert!(!glob("v?.?", "v1.23"));
        assert!(!glob("?", ""));
        assert!(glob("*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaab"));
        assert!(!glob("*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
    }

    #[test]
    fn glob_brackets_braces_and_backslashes_are_literal() {
        assert!(glob("[abc]", "[abc]"));
        assert!(!glob("[abc]", "a"));
        assert!(glob("{a,b}", "{a,b}"));
        assert!(!glob("{a,b}", "a"));
        assert!(glob("a\\*", "a\\xyz"));
        assert!(!glob("a\\*", "a*"));
        assert!(glob("x[1]*", "x[1]y"));
    }

    #[test]
    fn glob_question_mark_is_one_unicode_character() {
        assert!(glob("caf?", "café"));
        assert!(glob("?", "日"));
        assert!(!glob("??", "日"));
        assert!(glob("*本", "日本"));
        assert!(glob("日*語", "日本語"));
        assert!(glob("ü*?x", "üéöx"));
        assert!(!glob("é", "e"));
    }

    #[test]
    fn glob_reports_fixed_prefix_and_literalness() {
        assert_eq!(Glob::new("acme/*").fixed_prefix(), "acme/");
        assert_eq!(Glob::new("acme?x/*").fixed_prefix(), "acme");
        assert_eq!(Glob::new("acme").fixed_prefix(), "acme");
        assert!(Glob::new("acme").is_literal());
        assert!(!Glob::new("ac?me").is_literal());
    }

    #[test]
    fn regex_must_match_the_whole_value() {
        let regex = matcher(r#"{ regex = "refs/heads/(main|release-.*)" }"#);
        assert!(regex.matches_text("refs/heads/main"));
        assert!(regex.matches_text("refs/heads/release-1"));
        assert!(!regex.matches_text("refs/heads/main2"));
        assert!(!regex.matches_text("xrefs/heads/main"));
        let alternation = matcher(r#"{ regex = "a|b" }"#);
        assert!(
            !alternation.matches_text("ab"),
            "anchoring covers every branch"
        );
    }

    #[test]
    fn invalid_or_huge_regexes_are_refused_with_one_line() {
        let table: toml::Table = toml::from_str(r#"v = { regex = "(abc" }"#).expect("toml");
        let error = Matcher::from_toml(&table["v"]).expect_err("unclosed group");
        assert!(error.contains("invalid regex \"(abc\""), "{error}");
        assert!(error.contains("unclosed group"), "{error}");
        assert!(!error.contains('\n'), "{error}");
        assert!(AnchoredRegex::new("a{1000}{1000}").is_err());
    }

    #[test]
    fn odd_condition_values_are_refused() {
        for value in ["[]", "1.5", "[[\"a\"]]", "{ regx = \"a\" }", "1979-05-27"] {
            let table: toml::Table = toml::from_str(&format!("v = {value}")).expect("toml");
            assert!(Matcher::from_toml(&table["v"]).is_err(), "{value}");
        }
    }

    #[test]
    fn pinning_follows_the_safety_rule() {
        let pins = |claim: &str, value: &str| Condition::new(claim, matcher(value)).pins_owner();
        assert!(pins("repository_owner", "\"acme\""));
        assert!(pins("repository_owner_id", "123"));
        assert!(pins("repository_id", "[\"1\", 2]"));
        assert!(pins("enterprise", "\"acme-corp\""));
        assert!(!pins("repository_owner", "\"acm*\""));
        assert!(!pins("repository_owner", "[\"acme\", \"*\"]"));
        assert!(!pins("repository_owner", r#"{ regex = "acme" }"#));
        assert!(pins("repository", "\"acme/*\""));
        assert!(pins("repository", "\"acme/app\""));
        assert!(!pins("repository", "\"acme*\""));
        assert!(!pins("repository", "\"acme?/x\""));
        assert!(pins("job_workflow_ref", "[\"acme/a/*\", \"acme/b/*\"]"));
        assert!(!pins("job_workflow_ref", "[\"acme/a/*\", \"*\"]"));
        assert!(pins("sub", "\"repo:acme/app:*\""));
        assert!(!pins("sub", "\"repo:*\""));
        assert!(!pins("ref", "\"refs/heads/main\""));
        assert!(!rule(&[("ref", "\"x\"")]).pins_owner());
        assert!(rule(&[("ref", "\"x\""), ("repository_owner", "\"acme\"")]).pins_owner());
    }
}
