//! Reading the Prometheus text page of `/metrics`: the value of one series, named by its
//! metric name and its whole label set. Labels compare as a set, so a test need not know
//! the order the exporter prints them in (a test that cares reads the page itself).

/// The value of the series `name` whose labels are exactly `labels`, if the page has it.
pub fn sample(page: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(parse_line)
        .find(|series| {
            series.name == name
                && series.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(key, value)| series.labels.iter().any(|(k, v)| k == key && v == value))
        })
        .map(|series| series.value)
}

/// `name{labels}` as it appears on the page (labels in the order given), for messages.
pub fn describe(name: &str, labels: &[(&str, &str)]) -> String {
    let labels: Vec<String> = labels
        .iter()
        .map(|(key, value)| format!("{key}=\"{value}\""))
        .collect();
    format!("{name}{{{}}}", labels.join(","))
}

struct Series {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// `name{key="value",…} value [timestamp]` or `name value`; `None` for anything else.
fn parse_line(line: &str) -> Option<Series> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inner)?;
        labels = parsed;
        rest = after;
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Series {
        name,
        labels,
        value,
    })
}

/// The labels up to the closing `}`, and what follows it. Values may hold escaped quotes,
/// backslashes and newlines, commas and braces.
fn parse_labels(mut text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start_matches([',', ' ']);
        if let Some(after) = text.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, after_key) = text.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after_key.char_indices();
        let end = loop {
            match chars.next()? {
                (at, '"') => break at,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, other) => value.push(other),
            }
        };
        labels.push((key.trim().to_string(), value));
        text = &after_key[end + 1..];
    }
}
