//! The dashboard's HTML: one layout, tables, forms and an SVG chart, written as strings. No
//! script at all: every page reads without JavaScript, and the Content-Security-Policy
//! forbids scripts, so nothing an attacker put in a user agent, a subject or a login can run
//! even if escaping were ever missed. Everything shown goes through [`esc`].

use super::live::{Minute, KINDS, STACKED};

/// HTML-escapes text for an element's content or a quoted attribute.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
                       form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub const PAGES: [(&str, &str); 5] = [
    ("live", "Live"),
    ("who", "Who"),
    ("people", "People"),
    ("catch", "Catch"),
    ("peers", "Peers"),
];

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:0;color:#222}\
nav{background:#1d3557;padding:.6em 1em}nav a{color:#fff;margin-right:1.2em;text-decoration:none}\
nav a.on{font-weight:bold;text-decoration:underline}main{padding:1em}\
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border-bottom:1px solid #ddd;padding:.25em .7em;text-align:left}\
th{background:#f4f4f4}.n{text-align:right}form.i{display:inline}button{cursor:pointer}\
.banned{color:#b00}.allowlisted{color:#070}.k{display:inline-block;width:.8em;height:.8em;margin:0 .3em}";

/// A whole page: the navigation, `body`, and a refresh every `refresh` seconds (the live
/// views refresh themselves without a script).
pub fn page(current: &str, title: &str, body: &str, refresh: Option<u32>) -> String {
    let nav: String = PAGES
        .iter()
        .map(|(id, name)| {
            let on = if *id == current { " class=on" } else { "" };
            format!("<a href=\"/dashboard/{id}\"{on}>{name}</a>")
        })
        .collect();
    let meta = refresh
        .map(|s| format!("<meta http-equiv=refresh content={s}>"))
        .unwrap_or_default();
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>{meta}<title>Moat: {t}</title>\
         <style>{STYLE}</style></head><body><nav>{nav}\
         <form class=i method=post action=/dashboard/logout style=\"float:right\">\
         <button>Log out</button></form></nav><main><h1>{t}</h1>{body}</main></body></html>",
        t = esc(title)
    )
}

/// A table; cells are already HTML (escape them with [`esc`]).
pub fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return "<p><em>Nothing yet.</em></p>".into();
    }
    let h: String = head
        .iter()
        .map(|c| format!("<th>{}</th>", esc(c)))
        .collect();
    let r: String = rows
        .iter()
        .map(|r| {
            format!(
                "<tr>{}</tr>",
                r.iter()
                    .map(|c| format!("<td>{c}</td>"))
                    .collect::<String>()
            )
        })
        .collect();
    format!("<table><tr>{h}</tr>{r}</table>")
}

/// A one-button form posting `field=value` (and the session's CSRF token) to `action`.
pub fn button(action: &str, field: &str, value: &str, csrf: &str, label: &str) -> String {
    format!(
        "<form class=i method=post action=\"{}\"><input type=hidden name=csrf value=\"{}\">\
         <input type=hidden name=\"{}\" value=\"{}\"><button>{}</button></form>",
        esc(action),
        esc(csrf),
        esc(field),
        esc(value),
        esc(label)
    )
}

/// By kind; only [`STACKED`] ones are drawn.
const COLOURS: [&str; KINDS.len()] = [
    "#a8dadc", "#e63946", "#f4a261", "#6a4c93", "#2a9d8f", "#264653", "#e9c46a", "#999999",
    "#999999", "#999999", "#999999", "#999999",
];

/// A series as bars, one per point: every kind but requests stacked, requests as a line.
/// Plain SVG with a legend and the numbers in `<title>`s; `since` labels the left end.
pub fn chart(id: &str, series: &[Minute], since: &str) -> String {
    let (w, h, pad) = (720.0_f64, 180.0_f64, 20.0_f64);
    let max = series
        .iter()
        .map(|m| m.counts[STACKED].iter().sum::<u64>().max(m.counts[0]))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let bw = (w - pad) / series.len().max(1) as f64;
    let mut svg = format!(
        "<svg id=\"{}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{}\" \
         role=img aria-label=\"since {}\">",
        esc(id),
        h + pad,
        esc(since)
    );
    let mut line = String::new();
    for (i, m) in series.iter().enumerate() {
        let x = pad + i as f64 * bw;
        let mut y = h;
        for (k, n) in m
            .counts
            .iter()
            .enumerate()
            .take(STACKED.end)
            .skip(STACKED.start)
        {
            if *n == 0 {
                continue;
            }
            let bh = (*n as f64 / max) * (h - pad);
            y -= bh;
            svg.push_str(&format!(
                "<rect class=\"bar {}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" \
                 fill=\"{}\"><title>{}: {n}</title></rect>",
                KINDS[k].0,
                (bw - 1.0).max(1.0),
                COLOURS[k],
                esc(KINDS[k].1)
            ));
        }
        let ry = h - (m.counts[0] as f64 / max) * (h - pad);
        line.push_str(&format!("{:.1},{ry:.1} ", x + bw / 2.0));
    }
    svg.push_str(&format!(
        "<polyline fill=none stroke=\"#1d3557\" stroke-width=1.5 points=\"{}\"/>\
         <line x1=\"{pad}\" y1=\"{h}\" x2=\"{w}\" y2=\"{h}\" stroke=\"#999\"/>\
         <text x=0 y=12 font-size=10>{}</text><text x=0 y=\"{h}\" font-size=10>0</text>\
         <text x=\"{pad}\" y=\"{}\" font-size=10>{}</text>\
         <text x=\"{}\" y=\"{}\" font-size=10>now</text></svg>",
        line.trim_end(),
        max as u64,
        h + 14.0,
        esc(since),
        w - 24.0,
        h + 14.0
    ));
    let legend: String = KINDS
        .iter()
        .enumerate()
        .take(STACKED.end)
        .map(|(k, (_, label))| {
            format!(
                "<span class=k style=\"background:{}\"></span>{}",
                COLOURS[k],
                esc(label)
            )
        })
        .collect::<Vec<_>>()
        .join(" ");
    format!("{svg}<p>{legend}</p>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_attackers_write_is_text() {
        let ua = "<script>alert(1)</script>\"'&\u{0}";
        let e = esc(ua);
        assert!(!e.contains('<') && !e.contains('"') && !e.contains('\'') && !e.contains('\0'));
        assert_eq!(
            e,
            "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;\u{fffd}"
        );
        let b = button("/dashboard/allow", "ip", "1.2.3.4\"><x", "tok", "Allow");
        assert!(b.contains("value=\"1.2.3.4&quot;&gt;&lt;x\""), "{b}");
    }
}
