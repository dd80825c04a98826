//! fail2ban's `<tag>`s: first the option tags a filter's values refer to (`<mdre-<mode>>`,
//! replaced innermost first until none is left, as `substituteRecursiveTags` does), then the
//! regex tags fail2ban expands when it compiles a regex (`<HOST>`, `<ADDR>`, `<F-USER>…
//! </F-USER>` and the others of `failregex.py`).

use std::collections::BTreeMap;

/// How often one tag may be replaced inside one value before it counts as a loop.
const MAX_REPLACE: usize = 10;

/// How many tags one value may have replaced in all, and how long it may grow: each tag may be
/// replaced ten times, by a value whose tags were replaced before, so values may grow tenfold
/// per tag (10^9 bytes from nine short lines). fail2ban's own filters stay far below both.
const MAX_REPLACEMENTS: usize = 10_000;
const MAX_VALUE: usize = super::ini::MAX_VALUE;

/// An IPv4 address, as fail2ban's `IP_4_RE`.
const IP4: &str = r"(?:\d{1,3}\.){3}\d{1,3}";
/// An IPv6 address, as fail2ban's `IP_6_RE`.
const IP6: &str = r"(?:[0-9a-fA-F]{1,4}::?|:){1,7}(?:[0-9a-fA-F]{1,4}|(?<=:):)";

fn r_ip4() -> String {
    format!("(?:::f{{4,6}}:)?(?P<ip4>{IP4})")
}
fn r_ip6() -> String {
    format!("(?P<ip6>{IP6})")
}
const R_DNS: &str = r"(?P<dns>[\w\-.^_]*\w)";
const R_CIDR: &str = r"(?P<cidr>\d+)";

fn r_addr() -> String {
    format!(r"\[?(?:{}|{})\]?", r_ip4(), r_ip6())
}

/// Finds the first `<name>` at or after `from` whose name has no space or angle bracket:
/// fail2ban's `TAG_CRE`, `<([^ <>]+)>`. Returns (start, end, name).
fn next_tag(s: &str, from: usize) -> Option<(usize, usize, &str)> {
    let bytes = s.as_bytes();
    let mut i = from;
    while let Some(off) = s[i..].find('<') {
        let start = i + off;
        let mut j = start + 1;
        while j < bytes.len() && !matches!(bytes[j], b' ' | b'<' | b'>') {
            j += 1;
        }
        if j < bytes.len() && bytes[j] == b'>' && j > start + 1 {
            return Some((start, j + 1, &s[start + 1..j]));
        }
        i = start + 1;
    }
    None
}

/// Replaces `<tag>`s in every value of `tags` with other values of `tags` or, failing that,
/// with `extra(tag)`; a tag neither knows stays as it is (the regex tags). Tags in `ignore`
/// are left alone. Errors on a value that refers to itself or loops.
pub fn substitute_recursive(
    tags: &BTreeMap<String, String>,
    ignore: &[String],
    extra: &mut dyn FnMut(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, String> {
    let mut out = tags.clone();
    let keys: Vec<String> = tags.keys().cloned().collect();
    for key in keys {
        if ignore.contains(&key) {
            continue;
        }
        let mut value = out[&key].clone();
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let mut replaced = 0;
        let mut at = 0;
        while let Some((start, end, name)) = next_tag(&value, at) {
            let name = name.to_string();
            if ignore.contains(&name) {
                at = end;
                continue;
            }
            let n = counts.entry(name.clone()).or_default();
            if name == key || *n >= MAX_REPLACE {
                return Err(format!(
                    "`{key}` refers to itself through <{name}> and cannot be resolved"
                ));
            }
            let replacement = match out.get(&name) {
                Some(v) => Some(v.clone()),
                None => extra(&name),
            };
            let Some(replacement) = replacement else {
                at = end;
                continue;
            };
            *n += 1;
            replaced += 1;
            if replaced > MAX_REPLACEMENTS
                || value.len() - (end - start) + replacement.len() > MAX_VALUE
            {
                return Err(format!(
                    "`{key}`: its tags make more than {MAX_REPLACEMENTS} replacements or {} KiB \
                     (a loop?)",
                    MAX_VALUE / 1024
                ));
            }
            value.replace_range(start..end, &replacement);
            // Look again from the start of what was put in: it may hold tags itself, and an
            // outer tag around it may now be complete.
            at = value[..start].rfind('<').unwrap_or(0);
        }
        out.insert(key, value);
    }
    Ok(out)
}

/// Expands the regex tags of one regex as fail2ban's `Regex._resolveHostTag` does, with
/// `usedns = no` (Moat never resolves a name an attacker chose: `<HOST>` takes addresses
/// only, and a name a regex captures with `<DNS>` yields no address).
pub fn resolve_regex_tags(regex: &str) -> String {
    let mut out = String::with_capacity(regex.len() * 2);
    let mut open: Vec<String> = Vec::new();
    let mut skiplines = 0;
    let mut rest = regex;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        // fail2ban's FTAG_CRE: `</?[\w\-]+/?>`.
        let body_end = after[1..].find('>').map(|e| e + 1);
        let tag = body_end.map(|e| &after[1..e]).filter(|t| {
            let t = t.strip_prefix('/').unwrap_or(t);
            let t = t.strip_suffix('/').unwrap_or(t);
            !t.is_empty()
                && t.chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        });
        let Some(tag) = tag else {
            out.push('<');
            rest = &after[1..];
            continue;
        };
        let whole = &after[..tag.len() + 2];
        rest = &after[tag.len() + 2..];
        let expanded = match tag {
            "HOST" | "ADDR" | "F-ADDR/" => r_addr(),
            "IP4" | "F-IP4/" => r_ip4(),
            "IP6" | "F-IP6/" => r_ip6(),
            "DNS" | "F-DNS/" => R_DNS.to_string(),
            "CIDR" | "F-CIDR/" => R_CIDR.to_string(),
            "SUBNET" | "F-SUBNET/" => {
                format!(r"\[?(?:{}|{})(?:/{R_CIDR})?\]?", r_ip4(), r_ip6())
            }
            "F-ID/" => r"(?P<fid>\S+)".to_string(),
            "F-PORT/" => r"(?P<fport>\w+)".to_string(),
            "SKIPLINES" => {
                skiplines += 1;
                format!(r"\n(?P<skiplines{}>(?:(?:.*\n)*?))", skiplines - 1)
            }
            _ => match custom(tag) {
                Some((true, name)) if open.contains(&name) => ")".to_string(),
                Some((true, _)) => whole.to_string(),
                Some((false, name)) => {
                    open.push(name.clone());
                    format!("(?P<{}>", group_name(&name))
                }
                None => whole.to_string(),
            },
        };
        out.push_str(&expanded);
    }
    out.push_str(rest);
    out
}

/// `F-NAME` or `/F-NAME` (upper case, digits, `_`, `-`): (closing, NAME).
fn custom(tag: &str) -> Option<(bool, String)> {
    let (closing, t) = match tag.strip_prefix('/') {
        Some(t) => (true, t),
        None => (false, tag),
    };
    let name = t.strip_prefix("F-")?;
    (!name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' || c == '-'))
    .then(|| (closing, name.to_string()))
}

/// The group name fail2ban gives `<F-NAME>`: lower case, `id` as `fid`, `port` as `fport`;
/// `-` is not allowed in a group name, so it becomes `_` (no filter here relies on one).
pub fn group_name(name: &str) -> String {
    let lower = name.to_lowercase().replace('-', "_");
    match lower.as_str() {
        "id" => "fid".into(),
        "port" => "fport".into(),
        _ => lower,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn innermost_first_and_unknown_tags_stay() {
        let tags: BTreeMap<String, String> = [
            ("failregex".into(), "<mdre-<mode>> <HOST>".into()),
            ("mode".into(), "more".into()),
        ]
        .into();
        let got = substitute_recursive(&tags, &[], &mut |t| match t {
            "mdre-more" => Some("^x <_port>".into()),
            "_port" => Some(":\\d+".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(got["failregex"], "^x :\\d+ <HOST>");
        let looped: BTreeMap<String, String> = [("a".into(), "<a>".into())].into();
        assert!(substitute_recursive(&looped, &[], &mut |_| None).is_err());
    }

    #[test]
    fn regex_tags() {
        let r = resolve_regex_tags("^<F-USER>\\S+</F-USER> from <HOST> <F-ID/> </F-NOPE> <x>");
        assert!(r.starts_with("^(?P<user>\\S+) from \\[?(?:"), "{r}");
        assert!(r.ends_with(" (?P<fid>\\S+) </F-NOPE> <x>"), "{r}");
    }
}
