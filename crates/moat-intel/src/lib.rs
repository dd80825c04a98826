//! Intelligence extraction from captured spam.
//!
//! Moat's capture listener stores what spam bots send as raw RFC 5322 bytes. The useful part of
//! such a message, for blocking and for sharing, is a handful of indicators: the links it
//! advertises (and the domains behind them), who it claims to come from, whom it targets and
//! the relays it passed. [`extract`] turns one raw message into those [`Indicators`], including
//! a campaign [`Fingerprint`]; [`cluster`] (or the incremental [`Campaigns`]) groups messages
//! by fingerprint into the spam runs that sent them.
//!
//! The crate does no I/O and never panics, whatever the bytes: its input is written by
//! adversaries. MIME (transfer encodings, nested multiparts, charsets) is left to
//! `mail-parser`; URL syntax to `url`; the public-suffix list to `psl`. What is hand-written is
//! the part specific to spam: finding links in HTML attributes, CSS and defanged text.

mod campaign;
mod fingerprint;
mod html;
mod norm;
mod text;

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

pub use campaign::{cluster, linked, Campaign, Campaigns, Fingerprint, BODY_DISTANCE};
use fingerprint::{Personal, Shingler};

/// What one message reveals. Every list is deduplicated and keeps first-seen order, so the first
/// entry is the most prominent one (the top header, the first link).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Indicators {
    /// Normalised http(s) URLs.
    pub urls: Vec<FoundUrl>,
    /// Registrable domains (eTLD+1) of the URLs: the unit that domain block lists work in.
    pub domains: Vec<String>,
    /// `To`, `Cc` and `Bcc` addresses, lowercased.
    pub recipients: Vec<String>,
    /// `From`, `Sender`, `Reply-To` and `Return-Path` addresses, lowercased. All are forgeable;
    /// they are kept because spam runs reuse them.
    pub senders: Vec<String>,
    /// `Received` header values, top (most recent hop) first, with folding undone.
    pub received: Vec<String>,
    /// The decoded subject, empty if there is none.
    pub subject: String,
    /// What groups this message with others of its spam run: see [`cluster`].
    pub fingerprint: Fingerprint,
}

/// One URL and what is known about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundUrl {
    /// Normalised: scheme and host lowercased, host in punycode, default port dropped.
    pub url: String,
    /// eTLD+1 of the host; `None` for an IP address.
    pub registrable_domain: Option<String>,
    /// The host is a known link shortener, so the real destination is hidden behind it.
    pub shortener: bool,
    /// Where the URL was first seen.
    pub source: Source,
}

/// Where in the message a URL was found. Links a reader is meant to click (`HtmlHref`) weigh
/// differently from tracking pixels (`HtmlSrc`) or unsubscribe endpoints, hence the distinction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Plain text, or the text nodes and scripts of HTML.
    Text,
    /// An `href` attribute.
    HtmlHref,
    /// `src` or another image-loading attribute (`background`, `poster`, `data-src`, ...).
    HtmlSrc,
    /// One candidate of a `srcset`.
    HtmlSrcset,
    /// A form `action` or `formaction`.
    HtmlAction,
    /// CSS `url(...)` or `@import`, in a `style` attribute or a `<style>` element.
    Css,
    /// `<meta http-equiv="refresh">`.
    MetaRefresh,
    /// The `List-Unsubscribe` header.
    ListUnsubscribe,
    /// A text or HTML part sent as an attachment.
    Attachment,
}

/// How deep `message/rfc822` attachments are followed; bounds work on hostile nesting.
const MAX_DEPTH: usize = 8;

/// Accumulates indicators while deduplicating.
#[derive(Default)]
struct Collector {
    out: Indicators,
    /// Keyed hashes of the raw candidates already handled: a link repeated in a message (logo,
    /// button and footer of a newsletter) is normalised once. Keyed per process
    /// (`RandomState`), so no message can make two different candidates collide on purpose.
    raw_seen: HashSet<u64>,
    raw_hasher: RandomState,
    urls: HashSet<String>,
    domains: HashSet<String>,
    recipients: HashSet<String>,
    senders: HashSet<String>,
    /// The recipients' details, taken out of the fingerprint.
    personal: Personal,
    /// The body fingerprint, fed with what a reader sees.
    shingler: Shingler,
}

impl Collector {
    fn url(&mut self, candidate: &str, source: Source) {
        if !self.raw_seen.insert(self.raw_hasher.hash_one(candidate)) {
            return;
        }
        let Some(n) = norm::normalise(candidate) else {
            return;
        };
        if !self.urls.insert(n.url.clone()) {
            return;
        }
        if let Some(d) = &n.registrable_domain {
            if self.domains.insert(d.clone()) {
                self.out.domains.push(d.clone());
            }
        }
        self.out.urls.push(FoundUrl {
            url: n.url,
            registrable_domain: n.registrable_domain,
            shortener: n.shortener,
            source,
        });
    }

    fn text(&mut self, body: &str, source: Source) {
        text::candidates(&text::deobfuscate(body), &mut |c| self.url(c, source));
    }

    /// A text part: links, and the body fingerprint unless it is an attachment.
    fn text_part(&mut self, body: &str, attachment: bool) {
        if attachment {
            self.text(body, Source::Attachment);
        } else {
            self.shingler.feed(body, &self.personal);
            self.text(body, Source::Text);
        }
    }

    /// Scans an HTML body. Inside an attachment every URL is labelled [`Source::Attachment`],
    /// because for triage "it was in an attached file" matters more than which attribute; an
    /// attachment's text is not part of the body fingerprint.
    fn html(&mut self, body: &str, attachment: bool) {
        let text_source = if attachment {
            Source::Attachment
        } else {
            Source::Text
        };
        html::scan(body, &mut |item| match item {
            html::Item::Url(u, s) => self.url(u, if attachment { Source::Attachment } else { s }),
            html::Item::Text(t) => {
                if !attachment {
                    self.shingler.feed(t, &self.personal);
                }
                self.text(t, text_source);
            }
            html::Item::Hidden(t) => self.text(t, text_source),
        });
    }

    fn address(&mut self, recipient: bool, addr: &str) {
        let addr = bare_address(addr);
        if addr.is_empty() {
            return;
        }
        let (seen, list) = if recipient {
            (&mut self.recipients, &mut self.out.recipients)
        } else {
            (&mut self.senders, &mut self.out.senders)
        };
        if recipient {
            self.personal.address(&addr);
        }
        if seen.insert(addr.clone()) {
            list.push(addr);
        }
    }

    /// The fingerprint, once headers and bodies are in.
    fn finish(mut self) -> Indicators {
        let urls = self
            .out
            .urls
            .iter()
            .map(|u| (u.url.as_str(), u.registrable_domain.as_deref()));
        self.out.fingerprint = Fingerprint {
            url_set: fingerprint::url_set(urls, &self.personal),
            subject_skeleton: fingerprint::subject_skeleton(&self.out.subject, &self.personal),
            body: self.shingler.finish(),
        };
        self.out
    }
}

/// Extracts indicators from one raw message. Never panics; input `mail-parser` cannot make a
/// message of is scanned as plain text, so its links are still found.
pub fn extract(raw: &[u8]) -> Indicators {
    let mut c = Collector::default();
    // mail-parser 0.11 has `debug_assert!`s on internal states that hostile MIME structure can
    // reach (found by tests/garbage.rs); they are compiled out of release builds, but a debug
    // build would panic. Catching keeps the no-panic promise in every build (with the default
    // `panic = "unwind"`); the message is then treated as unparseable.
    let parsed =
        std::panic::catch_unwind(|| MessageParser::default().parse(raw)).unwrap_or_default();
    match parsed {
        Some(msg) => {
            headers(&msg, raw, &mut c);
            bodies(&msg, &mut c, 0);
        }
        None => c.text_part(&String::from_utf8_lossy(raw), false),
    }
    c.finish()
}

/// An address as a header gives it, without surrounding blanks and angle brackets, lowercased.
fn bare_address(addr: &str) -> String {
    addr.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_lowercase()
}

/// The header value as sent, folding undone. Used where the parsed form loses what matters
/// (`Received`, whose free text is the point) or has no parsed form (`List-Unsubscribe`).
fn raw_value(raw: &[u8], start: u32, end: u32) -> String {
    let bytes = raw.get(start as usize..end as usize).unwrap_or_default();
    String::from_utf8_lossy(bytes)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn headers(msg: &Message<'_>, raw: &[u8], c: &mut Collector) {
    c.out.subject = msg.subject().unwrap_or_default().to_string();
    let Some(root) = msg.parts.first() else {
        return;
    };
    for h in &root.headers {
        let name = h.name().to_ascii_lowercase();
        match name.as_str() {
            "to" | "cc" | "bcc" | "from" | "sender" | "reply-to" => {
                let recipient = matches!(name.as_str(), "to" | "cc" | "bcc");
                if let Some(list) = h.value().as_address() {
                    for a in list.iter() {
                        if let Some(addr) = a.address() {
                            c.address(recipient, addr);
                        }
                        if let (true, Some(n)) = (recipient, a.name()) {
                            c.personal.name(n);
                        }
                    }
                }
            }
            // Where the message was really delivered (added by the receiving side): the
            // envelope recipient, often not in `To`. Only used to depersonalise the fingerprint.
            "delivered-to" | "x-original-to" | "envelope-to" | "x-envelope-to" => {
                let v = raw_value(raw, h.offset_start(), h.offset_end());
                c.personal.address(&bare_address(&v));
            }
            "return-path" => {
                let v = raw_value(raw, h.offset_start(), h.offset_end());
                c.address(false, &v);
            }
            "received" => {
                let v = raw_value(raw, h.offset_start(), h.offset_end());
                if !v.is_empty() {
                    c.out.received.push(v);
                }
            }
            "list-unsubscribe" => {
                // RFC 2369: `<uri>, <uri>`; whitespace inside the brackets is to be ignored,
                // which `raw_value` and `normalise` take care of. `mailto:` is dropped there.
                let v = raw_value(raw, h.offset_start(), h.offset_end());
                for part in v.split('<').skip(1) {
                    let uri = part.split('>').next().unwrap_or_default();
                    let uri: String = uri.split_whitespace().collect();
                    c.url(&uri, Source::ListUnsubscribe);
                }
            }
            _ => {}
        }
    }
}

/// Whether a part was sent as a file rather than as the message body.
fn is_attachment(part: &mail_parser::MessagePart<'_>) -> bool {
    part.content_disposition()
        .is_some_and(|d| d.c_type.eq_ignore_ascii_case("attachment"))
}

fn bodies(msg: &Message<'_>, c: &mut Collector, depth: usize) {
    for part in &msg.parts {
        let attachment = is_attachment(part);
        match &part.body {
            PartType::Text(t) => c.text_part(t, attachment),
            PartType::Html(h) => c.html(h, attachment),
            PartType::Message(inner) if depth < MAX_DEPTH => bodies(inner, c, depth + 1),
            // A text/* part that mail-parser left undecoded (unknown charset, say) still has
            // ASCII URLs in it.
            PartType::Binary(b) | PartType::InlineBinary(b)
                if part
                    .content_type()
                    .is_some_and(|t| t.c_type.eq_ignore_ascii_case("text")) =>
            {
                let text = String::from_utf8_lossy(b);
                let html = part
                    .content_type()
                    .and_then(|t| t.c_subtype.as_deref())
                    .is_some_and(|s| s.eq_ignore_ascii_case("html"));
                if html {
                    c.html(&text, attachment);
                } else {
                    c.text_part(&text, attachment);
                }
            }
            _ => {}
        }
    }
}
