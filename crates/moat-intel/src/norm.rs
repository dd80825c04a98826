//! URL normalisation, registrable domains and the shortener list.
//!
//! Every URL found anywhere goes through [`normalise`], so that the same link written as
//! `HTTP://Example.COM:80/x` in one part and `http://example.com/x` in another collapses to one
//! indicator, and so that an IDN host always appears in its punycode form (the form DNS block
//! lists and reputation feeds use).

use std::borrow::Cow;

use url::{Host, Url};

use crate::text::starts_ci;

/// Link shorteners: a shortened link hides its real destination, so a consumer may want to
/// expand it (out of band) or treat the shortener's own domain as uninformative.
const SHORTENERS: &[&str] = &[
    "bit.ly",
    "buff.ly",
    "cutt.ly",
    "goo.gl",
    "is.gd",
    "ow.ly",
    "rb.gy",
    "rebrand.ly",
    "s.id",
    "shorturl.at",
    "t.co",
    "t.ly",
    "tiny.cc",
    "tinyurl.com",
];

/// Shared hosts where the path, not the host, names the content (a document, a form, a file,
/// a channel), so two links differing only in an id-like path segment lead to different
/// things. Campaign fingerprints keep such paths verbatim instead of blanking id-like
/// segments. Hosts under a public suffix's private section (`*.github.io`, `*.web.app`) need no
/// entry: their registrable domain already tells tenants apart.
const PATH_ADDRESSED: &[&str] = &[
    "1drv.ms",
    "dl.dropboxusercontent.com",
    "docs.google.com",
    "drive.google.com",
    "dropbox.com",
    "forms.gle",
    "forms.office.com",
    "github.com",
    "ipfs.io",
    "linktr.ee",
    "onedrive.live.com",
    "pastebin.com",
    "raw.githubusercontent.com",
    "s3.amazonaws.com",
    "sharepoint.com",
    "sites.google.com",
    "storage.googleapis.com",
    "t.me",
    "telegra.ph",
    "wa.me",
];

/// A URL after normalisation, with what is derived from its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Normalised {
    pub url: String,
    pub registrable_domain: Option<String>,
    pub shortener: bool,
}

/// Characters stripped from the end of a URL found in free text: sentence punctuation and the
/// closing half of whatever the writer wrapped the link in. A `)` or `]` is kept when the URL
/// itself opened one (Wikipedia-style paths), so only unbalanced ones go.
pub(crate) fn trim_trailing(s: &str) -> &str {
    let mut s = s;
    loop {
        let Some(last) = s.chars().last() else {
            return s;
        };
        let strip = match last {
            '.' | ',' | ';' | ':' | '!' | '?' | '>' | '"' | '\'' | '*' | '\u{2019}'
            | '\u{201D}' => true,
            ')' => s.matches('(').count() < s.matches(')').count(),
            ']' => s.matches('[').count() < s.matches(']').count(),
            '}' => s.matches('{').count() < s.matches('}').count(),
            _ => false,
        };
        if !strip {
            return s;
        }
        s = &s[..s.len() - last.len_utf8()];
    }
}

/// Parses and normalises one candidate. Returns `None` for anything that is not an absolute
/// http(s) URL with a plausible internet host: other schemes (`mailto:`, `cid:`, `data:`) carry
/// no web indicator, and a dotless host (`http://intranet/`) is almost always a false positive
/// in spam.
pub(crate) fn normalise(candidate: &str) -> Option<Normalised> {
    let candidate = candidate.trim_matches(|c: char| c.is_whitespace() || c.is_control());
    // Whitespace inside a URL is never meaningful in mail; browsers and the URL standard strip
    // tabs and newlines, which is how a folded attribute value still works as a link.
    let candidate: Cow<'_, str> = if candidate.contains(['\t', '\n', '\r']) {
        Cow::Owned(
            candidate
                .chars()
                .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
                .collect(),
        )
    } else {
        Cow::Borrowed(candidate)
    };
    // Protocol-relative (`//cdn.example/x.png`): the mail client would use http(s) anyway.
    let candidate = if candidate.starts_with("//") {
        Cow::Owned(format!("http:{candidate}"))
    } else if starts_ci(&candidate, "http://") || starts_ci(&candidate, "https://") {
        candidate
    } else {
        return None;
    };
    let mut url = Url::parse(&candidate).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let host = match url.host()? {
        Host::Domain(d) => {
            // A fully qualified name (`example.com.`) is the same host.
            let d = d.trim_end_matches('.').to_string();
            if !d.contains('.') || d.starts_with('.') || d.contains("..") {
                return None;
            }
            if url.host_str() != Some(d.as_str()) {
                url.set_host(Some(&d)).ok()?;
            }
            Some(d)
        }
        Host::Ipv4(_) | Host::Ipv6(_) => None,
    };
    let registrable_domain = host
        .as_deref()
        .and_then(psl::domain_str)
        .map(str::to_string);
    let shortener = host.as_deref().is_some_and(is_shortener);
    Some(Normalised {
        url: url.into(),
        registrable_domain,
        shortener,
    })
}

/// Whether a (lowercase, punycode) host is one of the known shorteners or a subdomain of one.
pub(crate) fn is_shortener(host: &str) -> bool {
    in_list(SHORTENERS, host)
}

/// Whether a host's paths name content on a shared service: a shortener or one of
/// [`PATH_ADDRESSED`].
pub(crate) fn path_names_content(host: &str) -> bool {
    is_shortener(host) || in_list(PATH_ADDRESSED, host)
}

/// Whether `host` is an entry of `list` or a subdomain of one. Runs for every URL, so each
/// label suffix is compared for equality, which compares lengths before bytes: nearly every
/// entry is rejected without a `memcmp` (`ends_with` and ordering comparisons always make one).
fn in_list(list: &[&str], host: &str) -> bool {
    let mut suffix = host;
    loop {
        if list.contains(&suffix) {
            return true;
        }
        match memchr::memchr(b'.', suffix.as_bytes()) {
            Some(dot) => suffix = &suffix[dot + 1..],
            None => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercases_punycodes_and_drops_default_ports() {
        let n = normalise("HTTP://Bücher.Example:80/Path?Q=1").unwrap();
        assert_eq!(n.url, "http://xn--bcher-kva.example/Path?Q=1");
        let n = normalise("https://WWW.Example.co.uk:443").unwrap();
        assert_eq!(n.url, "https://www.example.co.uk/");
        assert_eq!(n.registrable_domain.as_deref(), Some("example.co.uk"));
        assert_eq!(
            normalise("https://a.example:8443/").unwrap().url,
            "https://a.example:8443/"
        );
    }

    #[test]
    fn rejects_other_schemes_and_dotless_hosts() {
        assert!(normalise("mailto:a@b.example").is_none());
        assert!(normalise("ftp://x.example/").is_none());
        assert!(normalise("http://intranet/").is_none());
        assert!(normalise("javascript:alert(1)").is_none());
        let ip = normalise("http://192.0.2.1/x").unwrap();
        assert_eq!(ip.registrable_domain, None);
    }

    #[test]
    fn trims_only_unbalanced_closers() {
        assert_eq!(trim_trailing("http://a.example/x)."), "http://a.example/x");
        assert_eq!(
            trim_trailing("http://a.example/W_(x)"),
            "http://a.example/W_(x)"
        );
        assert_eq!(trim_trailing("http://a.example/\"'>,"), "http://a.example/");
    }

    #[test]
    fn flags_shorteners_and_their_subdomains_only() {
        assert!(is_shortener("bit.ly"));
        assert!(is_shortener("www.bit.ly"));
        assert!(!is_shortener("notbit.ly"));
        assert!(normalise("https://t.co/abc").unwrap().shortener);
        assert!(!is_shortener("co"));
        assert!(path_names_content("docs.google.com"));
        assert!(path_names_content("x.sharepoint.com"));
        assert!(!path_names_content("google.com"));
    }
}
