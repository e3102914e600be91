//! Threat feeds: lists of prefixes from outside the policy (FireHOL netsets,
//! Spamhaus DROP, JSON arrays, AWS's ip-ranges.json). One parser for the
//! compiler, which snapshots a feed into the build, and for the agent, which
//! reads it again on its `refresh`: both accept and refuse the same bytes.
//!
//! A feed is parsed strictly: a line that is not a prefix (host bits set
//! included) refuses the whole feed, naming the line, so a truncated or
//! garbled download never becomes a half-applied block list.

use serde::Serialize;

use super::{Family, Prefix};
use crate::diag::Span;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedFormat {
    /// One prefix or address a line; `#` starts a comment (FireHOL).
    Netset,
    /// `prefix ; SBL id` a line; `;` starts a comment (Spamhaus DROP/EDROP).
    Spamhaus,
    /// A JSON array of prefix strings.
    Json,
    /// AWS's `ip-ranges.json`: `prefixes[].ip_prefix`, `ipv6_prefixes[].ipv6_prefix`.
    AwsIpRanges,
}

impl FeedFormat {
    pub const NAMES: &'static [&'static str] = &["netset", "spamhaus", "json", "aws_ip_ranges"];

    pub fn parse(s: &str) -> Option<FeedFormat> {
        Some(match s {
            "netset" => FeedFormat::Netset,
            "spamhaus" => FeedFormat::Spamhaus,
            "json" => FeedFormat::Json,
            "aws_ip_ranges" => FeedFormat::AwsIpRanges,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// The default `max_prefixes`: what the runtime's feed tries hold.
pub const DEFAULT_MAX_PREFIXES: u32 = 1_000_000;
/// The default `refresh`, in seconds.
pub const DEFAULT_REFRESH_SECS: u64 = 3600;

/// One prefix of a feed, with the line of the source it came from (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FeedEntry {
    pub prefix: Prefix,
    pub line: u32,
}

/// A line that is not a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadLine {
    pub line: u32,
    pub text: String,
    pub why: String,
}

/// Why a feed's bytes were refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedError {
    /// Lines that are not prefixes: the first few, and how many in all.
    Lines { bad: Vec<BadLine>, total: usize },
    /// The document is not the format's shape (JSON formats).
    Shape(String),
    /// More prefixes than `max_prefixes`.
    TooMany { count: usize, max: u32 },
}

impl std::fmt::Display for FeedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FeedError::Lines { bad, total } => {
                let first = &bad[0];
                write!(f, "line {}: `{}` {}", first.line, first.text, first.why)?;
                if *total > 1 {
                    write!(f, " (and {} more bad lines)", total - 1)?;
                }
                Ok(())
            }
            FeedError::Shape(why) => f.write_str(why),
            FeedError::TooMany { count, max } => write!(f, "{count} prefixes, more than max_prefixes = {max}"),
        }
    }
}

/// How many bad lines a refusal lists.
const BAD_LINES_SHOWN: usize = 5;

/// Parses a feed. Entries come back sorted by prefix, each prefix once (at
/// its first line).
pub fn parse(format: FeedFormat, bytes: &[u8], max: u32) -> Result<Vec<FeedEntry>, FeedError> {
    let text = String::from_utf8_lossy(bytes);
    let items: Vec<(u32, String)> = match format {
        FeedFormat::Netset => lines(&text, '#'),
        FeedFormat::Spamhaus => lines(&text, ';'),
        FeedFormat::Json => json_strings(&text, false)?,
        FeedFormat::AwsIpRanges => json_strings(&text, true)?,
    };
    let mut entries = Vec::with_capacity(items.len());
    let mut bad = Vec::new();
    let mut total_bad = 0;
    for (line, item) in items {
        match Prefix::parse(&item) {
            Ok(prefix) => entries.push(FeedEntry { prefix, line }),
            Err(e) => {
                total_bad += 1;
                if bad.len() < BAD_LINES_SHOWN {
                    bad.push(BadLine { line, text: item.chars().take(80).collect(), why: format!("is not a prefix: {e}") });
                }
            }
        }
    }
    if total_bad > 0 {
        return Err(FeedError::Lines { bad, total: total_bad });
    }
    entries.sort_by_key(|e| (e.prefix, e.line));
    entries.dedup_by_key(|e| e.prefix);
    if entries.len() > max as usize {
        return Err(FeedError::TooMany { count: entries.len(), max });
    }
    Ok(entries)
}

/// The first word of each line before `comment`, with its line number.
fn lines(text: &str, comment: char) -> Vec<(u32, String)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let l = l.split(comment).next().unwrap_or("").trim();
            let word = l.split_whitespace().next()?;
            Some((i as u32 + 1, word.to_string()))
        })
        .collect()
}

/// The prefix strings of a JSON feed, each with the line it is on.
fn json_strings(text: &str, aws: bool) -> Result<Vec<(u32, String)>, FeedError> {
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| FeedError::Shape(format!("not JSON: {e} (line {}, column {})", e.line(), e.column())))?;
    let strings: Vec<&serde_json::Value> = if aws {
        let list = |key: &str, field: &str| -> Result<Vec<&serde_json::Value>, FeedError> {
            match doc.get(key) {
                None => Ok(Vec::new()),
                Some(serde_json::Value::Array(a)) => a
                    .iter()
                    .map(|o| o.get(field).ok_or_else(|| FeedError::Shape(format!("an entry of `{key}` has no `{field}`"))))
                    .collect(),
                Some(_) => Err(FeedError::Shape(format!("`{key}` is not an array"))),
            }
        };
        if doc.get("prefixes").is_none() && doc.get("ipv6_prefixes").is_none() {
            return Err(FeedError::Shape("not an ip-ranges.json document: no `prefixes` or `ipv6_prefixes`".into()));
        }
        let mut v = list("prefixes", "ip_prefix")?;
        v.extend(list("ipv6_prefixes", "ipv6_prefix")?);
        v
    } else {
        match &doc {
            serde_json::Value::Array(a) => a.iter().collect(),
            _ => return Err(FeedError::Shape("not a JSON array of prefixes".into())),
        }
    };
    // Each string's line: found in document order from where the last one was.
    let mut out = Vec::with_capacity(strings.len());
    let mut at = 0usize;
    let mut line = 1u32;
    for v in strings {
        let s = match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let needle = format!("\"{s}\"");
        if let Some(i) = text[at..].find(&needle) {
            line += text[at..at + i].matches('\n').count() as u32;
            at += i + needle.len();
        }
        out.push((line, s));
    }
    Ok(out)
}

/// A checked feed: its settings and its snapshot.
#[derive(Clone, Debug, Serialize)]
pub struct Feed {
    pub name: String,
    /// As written: a path relative to the file that names it, or an https URL.
    pub source: String,
    /// The path relative to the root folder, or the URL: what is read.
    pub location: String,
    pub format: FeedFormat,
    pub refresh_secs: u64,
    pub max_prefixes: u32,
    /// Whether a `block` names it.
    pub blocked: bool,
    /// SHA-256 of the snapshot's bytes.
    pub sha256: String,
    /// Sorted by prefix.
    #[serde(skip)]
    pub entries: Vec<FeedEntry>,
    #[serde(skip)]
    pub span: Span,
    /// The first `block` that names it.
    #[serde(skip)]
    pub block_span: Option<Span>,
}

impl Feed {
    pub fn count(&self, family: Family) -> usize {
        self.entries.iter().filter(|e| e.prefix.family == family).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_with_their_lines() {
        let net = parse(FeedFormat::Netset, b"# firehol\n10.0.0.0/8\n\n1.2.3.4 # host\n2001:db8::/32\n10.0.0.0/8\n", 10).unwrap();
        let shown: Vec<String> = net.iter().map(|e| format!("{}@{}", e.prefix, e.line)).collect();
        assert_eq!(shown, ["1.2.3.4/32@4", "10.0.0.0/8@2", "2001:db8::/32@5"]);
        let sh = parse(FeedFormat::Spamhaus, b"; Spamhaus DROP\n1.10.16.0/20 ; SBL256894\n2.56.192.0/22 ; SBL459831\n", 10).unwrap();
        assert_eq!(sh.iter().map(|e| e.line).collect::<Vec<_>>(), [2, 3]);
        let js = parse(FeedFormat::Json, b"[\n \"192.0.2.0/24\",\n \"198.51.100.0/24\"\n]", 10).unwrap();
        assert_eq!(js.iter().map(|e| e.line).collect::<Vec<_>>(), [2, 3]);
        let aws = br#"{"syncToken":"1","prefixes":[
 {"ip_prefix":"3.5.140.0/22","region":"ap-northeast-2","service":"AMAZON"}],
 "ipv6_prefixes":[
 {"ipv6_prefix":"2600:1f00::/24","region":"us-east-1","service":"AMAZON"}]}"#;
        let a = parse(FeedFormat::AwsIpRanges, aws, 10).unwrap();
        assert_eq!(
            a.iter().map(|e| (e.prefix.to_string(), e.line)).collect::<Vec<_>>(),
            [("3.5.140.0/22".into(), 2), ("2600:1f00::/24".into(), 4)]
        );
    }

    #[test]
    fn bad_lines_and_oversized_feeds_are_refused() {
        let e = parse(FeedFormat::Netset, b"10.0.0.0/8\n10.0.0.1/8\nnonsense\n", 10).unwrap_err();
        let FeedError::Lines { bad, total } = &e else { panic!("{e:?}") };
        assert_eq!((bad[0].line, bad[1].line, *total), (2, 3, 2));
        assert!(e.to_string().starts_with("line 2: `10.0.0.1/8` is not a prefix: host bits are set"), "{e}");
        assert_eq!(parse(FeedFormat::Netset, b"10.0.0.0/8\n11.0.0.0/8\n", 1).unwrap_err(), FeedError::TooMany { count: 2, max: 1 });
        assert!(matches!(parse(FeedFormat::Json, b"{\"a\":1}", 10), Err(FeedError::Shape(_))));
        assert!(matches!(parse(FeedFormat::AwsIpRanges, b"[]", 10), Err(FeedError::Shape(_))));
        assert!(matches!(parse(FeedFormat::Json, b"[\"10.0.0.0/33\"]", 10), Err(FeedError::Lines { .. })));
    }
}
