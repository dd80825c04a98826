//! The browser side of the proof, embedded in the binary: one script that is both the page
//! helper and (loaded with `?worker`) the solver, and the challenge page.
//!
//! The script URL carries a hash of the script, so browsers may cache it for a year and still
//! pick up a new version the moment Moat is upgraded.

use std::sync::OnceLock;

pub const PROOF_JS: &str = include_str!("../assets/proof.js");
const CHALLENGE_HTML: &str = include_str!("../assets/challenge.html");

/// `/.moat/proof.js?v=<hash>`.
pub fn script_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let d = ring::digest::digest(&ring::digest::SHA256, PROOF_JS.as_bytes());
        let v: String = d.as_ref()[..6].iter().map(|b| format!("{b:02x}")).collect();
        format!("/.moat/proof.js?v={v}")
    })
}

/// The tag injected into HTML pages.
pub fn script_tag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| format!("<script src=\"{}\" async></script>", script_url()))
}

/// The page a GET navigation gets when a rule asks for a challenge. `return_to` must already be
/// a same-origin path (see [`safe_return`]). `nojs_url`, when set, is where a browser without
/// JavaScript is sent after `nojs_delay_secs`.
pub fn challenge_page(return_to: &str, nojs_url: Option<&str>, nojs_delay_secs: u64) -> String {
    let (head, body) = match nojs_url {
        Some(u) => {
            let u = escape_html(u);
            (
                format!(
                    "<noscript><meta http-equiv=\"refresh\" content=\"{nojs_delay_secs};url={u}\"></noscript>"
                ),
                format!(
                    "<noscript><p>JavaScript is off, so this check takes {nojs_delay_secs} seconds instead. \
                     You will be sent on automatically; if not, <a href=\"{u}\">continue</a> once the time is up.</p></noscript>"
                ),
            )
        }
        None => (
            String::new(),
            "<noscript><p>This page needs JavaScript to check your browser.</p></noscript>".into(),
        ),
    };
    CHALLENGE_HTML
        .replace("{{NOSCRIPT_HEAD}}", &head)
        .replace("{{NOSCRIPT_BODY}}", &body)
        .replace("{{SCRIPT_URL}}", script_url())
        .replace("{{RETURN}}", &escape_html(return_to))
}

/// `target` if it is a path on this site, else `/`: the challenge and no-JS redirects must not
/// become an open redirect (`//evil.example` and `/\evil.example` are other hosts to a browser).
pub fn safe_return(target: &str) -> &str {
    let b = target.as_bytes();
    let ok = b.first() == Some(&b'/')
        && !matches!(b.get(1), Some(b'/') | Some(b'\\'))
        && !target.bytes().any(|c| c.is_ascii_control());
    if ok {
        target
    } else {
        "/"
    }
}

pub fn escape_html(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_escapes_and_links_the_script() {
        let p = challenge_page("/a?b=\"<x>\"&c", Some("/.moat/nojs?t=1&r=%2F"), 5);
        assert!(p.contains("data-return=\"/a?b=&quot;&lt;x&gt;&quot;&amp;c\""));
        assert!(p.contains(script_url()));
        assert!(p.contains("content=\"5;url=/.moat/nojs?t=1&amp;r=%2F\""));
        assert!(!challenge_page("/", None, 5).contains("refresh"));
    }

    #[test]
    fn only_local_paths_are_returned_to() {
        assert_eq!(safe_return("/x?y=1"), "/x?y=1");
        for bad in [
            "//evil.example/",
            "/\\evil.example",
            "https://evil.example/",
            "",
            "x",
            "/a\nb",
        ] {
            assert_eq!(safe_return(bad), "/", "{bad:?}");
        }
    }
}
