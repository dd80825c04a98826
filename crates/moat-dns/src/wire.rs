//! The DNS message format (RFC 1035), without any I/O.
//!
//! Only what a stub resolver needs for forward-confirmed reverse DNS: one-question queries for
//! PTR, A and AAAA, and a strict parser for their answers. Keeping it free of sockets lets every
//! branch be tested with hand-made bytes, and the parser sees bytes from the network, so it
//! returns an error for anything malformed and never panics or loops.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

/// Longest name on the wire, length octets and root label included (RFC 1035 §2.3.4).
const MAX_NAME_WIRE: usize = 255;
/// Longest single label (RFC 1035 §2.3.4).
const MAX_LABEL: usize = 63;
const HEADER_LEN: usize = 12;
const CLASS_IN: u16 = 1;
const TYPE_CNAME: u16 = 5;
const FLAG_QR: u16 = 0x8000;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
const RCODE_NXDOMAIN: u8 = 3;

/// The record types this crate asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordType {
    /// IPv4 address of a name.
    A,
    /// Host name of an address (under `in-addr.arpa` / `ip6.arpa`).
    Ptr,
    /// IPv6 address of a name.
    Aaaa,
}

impl RecordType {
    /// The numeric TYPE on the wire.
    pub fn code(self) -> u16 {
        match self {
            RecordType::A => 1,
            RecordType::Ptr => 12,
            RecordType::Aaaa => 28,
        }
    }
}

/// One answer record of the asked type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A PTR target: lowercased, without the trailing dot.
    Ptr(String),
    /// An A or AAAA address.
    Addr(IpAddr),
}

/// Why a name could not be encoded or a message could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    #[error("invalid DNS name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("DNS message ends early")]
    ShortMessage,
    #[error("DNS response id {got:#06x} does not match query id {expected:#06x}")]
    IdMismatch { expected: u16, got: u16 },
    #[error("DNS message is not a response to a standard query")]
    NotResponse,
    #[error("DNS response question does not match the query")]
    QuestionMismatch,
    #[error("DNS server truncated the answer (TC bit); TCP fallback is not supported")]
    Truncated,
    #[error("DNS server answered with RCODE {0}")]
    Rcode(u8),
    #[error("DNS name compression pointer goes forward or loops")]
    BadPointer,
    #[error("DNS name is longer than 255 octets")]
    NameTooLong,
    #[error("DNS label uses a reserved type or a character outside printable ASCII")]
    BadLabel,
    #[error("DNS record data does not match its type or length")]
    BadRdata,
}

impl WireError {
    /// True when the datagram is not an answer to our query at all (someone else's id, not a
    /// response, another question). A resolver should drop such a datagram and keep waiting
    /// rather than give up, because a late answer to an earlier query or an off-path spoof
    /// must not cut short the real answer.
    pub fn is_foreign(&self) -> bool {
        matches!(
            self,
            WireError::IdMismatch { .. } | WireError::NotResponse | WireError::QuestionMismatch
        )
    }
}

/// The name whose PTR record holds the host name of `ip`: `4.3.2.1.in-addr.arpa` for
/// 1.2.3.4 and the 32-nibble `ip6.arpa` form for IPv6 (RFC 3596 §2.5).
///
/// The address is used as given; callers that receive IPv4-mapped IPv6 addresses from a
/// dual-stack socket should canonicalise first, or they would look up an `ip6.arpa` name that
/// nobody publishes.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        IpAddr::V6(v6) => {
            let mut out = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                // Writing to a String cannot fail.
                let _ = write!(out, "{:x}.{:x}.", byte & 0x0f, byte >> 4);
            }
            out.push_str("ip6.arpa");
            out
        }
    }
}

/// Builds a query for `name` / `qtype` with the caller's `id` and recursion desired: one
/// question, class IN, no EDNS (answers for PTR/A/AAAA of crawler hosts fit in 512 octets).
///
/// The id comes from the caller so that this module stays deterministic and the resolver
/// owns the randomness that makes off-path spoofing hard.
pub fn build_query(id: u16, name: &str, qtype: RecordType) -> Result<Vec<u8>, WireError> {
    let mut msg = Vec::with_capacity(HEADER_LEN + name.len() + 6);
    msg.extend_from_slice(&id.to_be_bytes());
    msg.extend_from_slice(&FLAG_RD.to_be_bytes());
    msg.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    msg.extend_from_slice(&[0; 6]); // ANCOUNT, NSCOUNT, ARCOUNT
    encode_name(name, &mut msg)?;
    msg.extend_from_slice(&qtype.code().to_be_bytes());
    msg.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(msg)
}

/// Parses the response to the query built with `id`, `qname` and `qtype`, and returns the
/// answers of that type, following CNAMEs within the answer section.
///
/// NXDOMAIN is an empty answer (the name has no records, which is a definite "no"); any other
/// error RCODE and a truncated answer are errors, because an incomplete answer must not be
/// mistaken for a complete one.
pub fn parse_response(
    msg: &[u8],
    id: u16,
    qname: &str,
    qtype: RecordType,
) -> Result<Vec<Record>, WireError> {
    let mut r = Reader { msg, pos: 0 };
    let got = r.u16()?;
    if got != id {
        return Err(WireError::IdMismatch { expected: id, got });
    }
    let flags = r.u16()?;
    let qdcount = r.u16()?;
    let ancount = r.u16()?;
    r.u16()?; // NSCOUNT
    r.u16()?; // ARCOUNT
    let opcode = (flags >> 11) & 0x0f;
    if flags & FLAG_QR == 0 || opcode != 0 {
        return Err(WireError::NotResponse);
    }

    // Check the echoed question: with a connected socket and a random id this is a cheap
    // extra guard against accepting an answer to some other question.
    if qdcount != 1 {
        return Err(WireError::QuestionMismatch);
    }
    let asked = normalise(qname);
    let qn = r.name()?;
    let qt = r.u16()?;
    let qc = r.u16()?;
    if qn != asked || qt != qtype.code() || qc != CLASS_IN {
        return Err(WireError::QuestionMismatch);
    }

    let rcode = (flags & 0x000f) as u8;
    if rcode == RCODE_NXDOMAIN {
        return Ok(Vec::new());
    }
    if rcode != 0 {
        return Err(WireError::Rcode(rcode));
    }
    if flags & FLAG_TC != 0 {
        return Err(WireError::Truncated);
    }

    let mut aliases: Vec<(String, String)> = Vec::new();
    let mut found: Vec<(String, Record)> = Vec::new();
    for _ in 0..ancount {
        let owner = r.name()?;
        let rtype = r.u16()?;
        let class = r.u16()?;
        r.u32()?; // TTL: the verifier applies its own cache lifetimes.
        let rdlen = usize::from(r.u16()?);
        let start = r.pos;
        let end = start.checked_add(rdlen).ok_or(WireError::ShortMessage)?;
        if end > msg.len() {
            return Err(WireError::ShortMessage);
        }
        r.pos = end;
        if class != CLASS_IN {
            continue;
        }
        let rdata = &msg[start..end];
        match rtype {
            TYPE_CNAME => aliases.push((owner, name_in_rdata(msg, start, end)?)),
            t if t != qtype.code() => {}
            _ => {
                let record = match qtype {
                    RecordType::Ptr => Record::Ptr(name_in_rdata(msg, start, end)?),
                    RecordType::A => {
                        let octets: [u8; 4] = rdata.try_into().map_err(|_| WireError::BadRdata)?;
                        Record::Addr(IpAddr::V4(Ipv4Addr::from(octets)))
                    }
                    RecordType::Aaaa => {
                        let octets: [u8; 16] = rdata.try_into().map_err(|_| WireError::BadRdata)?;
                        Record::Addr(IpAddr::V6(Ipv6Addr::from(octets)))
                    }
                };
                found.push((owner, record));
            }
        }
    }

    // The names that stand for the question: itself and every CNAME target reachable from
    // it. Records owned by any other name are ignored, so a server (or spoofer) cannot slip
    // in addresses for a name we did not ask about.
    let mut names = vec![asked];
    let mut grew = true;
    while grew {
        grew = false;
        for (owner, target) in &aliases {
            if names.contains(owner) && !names.contains(target) {
                names.push(target.clone());
                grew = true;
            }
        }
    }
    Ok(found
        .into_iter()
        .filter(|(owner, _)| names.contains(owner))
        .map(|(_, record)| record)
        .collect())
}

/// Lowercases and drops one trailing dot, the form names are compared in.
fn normalise(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// Reads a name that must fill the record data from `start` to `end` exactly (its
/// compression pointers may still point anywhere earlier in the message).
fn name_in_rdata(msg: &[u8], start: usize, end: usize) -> Result<String, WireError> {
    let mut r = Reader { msg, pos: start };
    let name = r.name()?;
    if r.pos != end {
        return Err(WireError::BadRdata);
    }
    Ok(name)
}

/// Labels we accept: printable ASCII without the dot. Host names are far narrower, but PTR
/// data is free-form; rejecting dots and control bytes keeps the dotted text form
/// unambiguous, so `a.b` as one label can never pose as the two labels `a` and `b`.
fn label_ok(label: &[u8]) -> bool {
    !label.is_empty()
        && label.len() <= MAX_LABEL
        && label.iter().all(|&b| b.is_ascii_graphic() && b != b'.')
}

fn encode_name(name: &str, out: &mut Vec<u8>) -> Result<(), WireError> {
    let invalid = |reason| WireError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() {
        return Err(invalid("empty name"));
    }
    let start = out.len();
    for label in trimmed.split('.') {
        if !label_ok(label.as_bytes()) {
            return Err(invalid("empty, over-long or non-printable label"));
        }
        // label_ok bounds the length to 63, so it fits the length octet.
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    if out.len() - start > MAX_NAME_WIRE {
        return Err(invalid("longer than 255 octets"));
    }
    Ok(())
}

/// A bounds-checked cursor over a message.
struct Reader<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let end = self.pos.checked_add(N).ok_or(WireError::ShortMessage)?;
        let bytes = self.msg.get(self.pos..end).ok_or(WireError::ShortMessage)?;
        self.pos = end;
        bytes.try_into().map_err(|_| WireError::ShortMessage)
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        self.take::<2>().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        self.take::<4>().map(u32::from_be_bytes)
    }

    /// Reads a possibly compressed name at the cursor, lowercased and without trailing dot,
    /// and leaves the cursor after it (after the first pointer, if any).
    ///
    /// Every pointer must point strictly before the start of the run of labels it ends.
    /// Those starts therefore decrease with every jump, so no pointer chain can loop, however
    /// the bytes were crafted; the 255-octet cap bounds the work on the labels themselves.
    fn name(&mut self) -> Result<String, WireError> {
        let msg = self.msg;
        let mut pos = self.pos;
        let mut run_start = pos;
        let mut resume = None;
        let mut wire_len = 0usize;
        let mut out = String::new();
        loop {
            let len = *msg.get(pos).ok_or(WireError::ShortMessage)?;
            match len & 0xc0 {
                0x00 if len == 0 => {
                    self.pos = resume.unwrap_or(pos + 1);
                    return Ok(out);
                }
                0x00 => {
                    let len = usize::from(len);
                    wire_len += 1 + len;
                    // + 1 for the root label that must still follow.
                    if wire_len + 1 > MAX_NAME_WIRE {
                        return Err(WireError::NameTooLong);
                    }
                    let label = msg
                        .get(pos + 1..pos + 1 + len)
                        .ok_or(WireError::ShortMessage)?;
                    if !label_ok(label) {
                        return Err(WireError::BadLabel);
                    }
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.extend(label.iter().map(|b| char::from(b.to_ascii_lowercase())));
                    pos += 1 + len;
                }
                0xc0 => {
                    let low = *msg.get(pos + 1).ok_or(WireError::ShortMessage)?;
                    let target = usize::from(len & 0x3f) << 8 | usize::from(low);
                    if target >= run_start {
                        return Err(WireError::BadPointer);
                    }
                    resume.get_or_insert(pos + 2);
                    run_start = target;
                    pos = target;
                }
                _ => return Err(WireError::BadLabel),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a response by hand: the query's header and question, with QR and `rcode` set,
    /// then `answers` (already encoded records) appended.
    fn response(
        id: u16,
        qname: &str,
        qtype: RecordType,
        rcode: u8,
        answers: &[Vec<u8>],
    ) -> Vec<u8> {
        let mut msg = build_query(id, qname, qtype).expect("valid name");
        let flags = FLAG_QR | FLAG_RD | 0x0080 | u16::from(rcode);
        msg[2..4].copy_from_slice(&flags.to_be_bytes());
        msg[6..8].copy_from_slice(&(answers.len() as u16).to_be_bytes());
        for a in answers {
            msg.extend_from_slice(a);
        }
        msg
    }

    /// An encoded IN record with TTL 300; `owner` is wire bytes (`QPTR` points at the question).
    fn rr(owner: &[u8], rtype: u16, rdata: &[u8]) -> Vec<u8> {
        let mut out = owner.to_vec();
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&300u32.to_be_bytes());
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(rdata);
        out
    }

    fn wire_name(name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        encode_name(name, &mut out).expect("valid name");
        out
    }

    const QPTR: &[u8] = &[0xc0, 0x0c];

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("66.249.66.1".parse().unwrap()),
            "1.66.249.66.in-addr.arpa"
        );
        assert_eq!(
            reverse_name("2001:db8::567:89ab".parse().unwrap()),
            "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
    }

    #[test]
    fn query_layout() {
        let q = build_query(0xbeef, "a.example.", RecordType::Aaaa).unwrap();
        assert_eq!(
            q,
            [
                0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, // header
                1, b'a', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0, // name
                0, 28, 0, 1, // AAAA IN
            ]
        );
    }

    #[test]
    fn query_rejects_bad_names() {
        for bad in [
            "",
            ".",
            "a..b",
            "a b.com",
            &"x".repeat(64),
            &["abc"; 64].join("."),
        ] {
            assert!(
                matches!(
                    build_query(1, bad, RecordType::A),
                    Err(WireError::InvalidName { .. })
                ),
                "{bad:?}"
            );
        }
        // 63-octet labels up to the 255 total are fine.
        let long = ["x".repeat(63).as_str(); 3].join(".") + "." + &"y".repeat(61);
        assert!(build_query(1, &long, RecordType::A).is_ok());
    }

    #[test]
    fn ptr_answer_lowercased_without_dot() {
        let q = "1.66.249.66.in-addr.arpa";
        let msg = response(
            7,
            q,
            RecordType::Ptr,
            0,
            &[rr(QPTR, 12, &wire_name("Crawl-66-249-66-1.GoogleBot.com."))],
        );
        assert_eq!(
            parse_response(&msg, 7, q, RecordType::Ptr).unwrap(),
            vec![Record::Ptr("crawl-66-249-66-1.googlebot.com".into())]
        );
        // The question is compared case-insensitively and with or without the dot.
        assert!(parse_response(&msg, 7, "1.66.249.66.IN-ADDR.ARPA.", RecordType::Ptr).is_ok());
    }

    #[test]
    fn ptr_rdata_may_be_compressed() {
        // Question name at 12; the PTR target "crawl" + pointer to "in-addr.arpa" inside it.
        let q = "1.0.0.127.in-addr.arpa";
        // Offsets: 12 "1", 14 "0", 16 "0", 18 "127", 22 "in-addr", 30 "arpa".
        let msg = response(
            9,
            q,
            RecordType::Ptr,
            0,
            &[rr(QPTR, 12, &[5, b'c', b'r', b'a', b'w', b'l', 0xc0, 22])],
        );
        assert_eq!(
            parse_response(&msg, 9, q, RecordType::Ptr).unwrap(),
            vec![Record::Ptr("crawl.in-addr.arpa".into())]
        );
    }

    #[test]
    fn a_after_cname_is_followed() {
        let q = "www.example.com";
        let target = wire_name("edge.example.net");
        let mut msg = response(1, q, RecordType::A, 0, &[rr(QPTR, TYPE_CNAME, &target)]);
        let target_at = msg.len() - target.len();
        let ptr = [0xc0 | (target_at >> 8) as u8, target_at as u8];
        let a = rr(&ptr, 1, &[192, 0, 2, 7]);
        msg.extend_from_slice(&a);
        // An A record for an unrelated owner must be ignored.
        msg.extend_from_slice(&rr(&wire_name("other.example"), 1, &[192, 0, 2, 99]));
        msg[6..8].copy_from_slice(&3u16.to_be_bytes());
        assert_eq!(
            parse_response(&msg, 1, q, RecordType::A).unwrap(),
            vec![Record::Addr("192.0.2.7".parse().unwrap())]
        );
    }

    #[test]
    fn other_types_are_ignored() {
        let q = "host.example";
        let msg = response(
            2,
            q,
            RecordType::Aaaa,
            0,
            &[
                rr(QPTR, 1, &[192, 0, 2, 1]),
                rr(
                    QPTR,
                    28,
                    &"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets(),
                ),
            ],
        );
        assert_eq!(
            parse_response(&msg, 2, q, RecordType::Aaaa).unwrap(),
            vec![Record::Addr("2001:db8::1".parse().unwrap())]
        );
    }

    #[test]
    fn rcodes_and_flags() {
        let q = "x.example";
        let nx = response(3, q, RecordType::A, 3, &[]);
        assert_eq!(parse_response(&nx, 3, q, RecordType::A), Ok(vec![]));
        let servfail = response(3, q, RecordType::A, 2, &[]);
        assert_eq!(
            parse_response(&servfail, 3, q, RecordType::A),
            Err(WireError::Rcode(2))
        );
        let mut tc = response(3, q, RecordType::A, 0, &[]);
        tc[2] |= 0x02;
        assert_eq!(
            parse_response(&tc, 3, q, RecordType::A),
            Err(WireError::Truncated)
        );
        let query = build_query(3, q, RecordType::A).unwrap();
        assert_eq!(
            parse_response(&query, 3, q, RecordType::A),
            Err(WireError::NotResponse)
        );
    }

    #[test]
    fn foreign_datagrams_are_recognised() {
        let q = "x.example";
        let msg = response(4, q, RecordType::A, 0, &[]);
        let e = parse_response(&msg, 5, q, RecordType::A).unwrap_err();
        assert_eq!(
            e,
            WireError::IdMismatch {
                expected: 5,
                got: 4
            }
        );
        assert!(e.is_foreign());
        let e = parse_response(&msg, 4, "y.example", RecordType::A).unwrap_err();
        assert_eq!(e, WireError::QuestionMismatch);
        assert!(e.is_foreign());
        assert_eq!(
            parse_response(&msg, 4, q, RecordType::Aaaa),
            Err(WireError::QuestionMismatch)
        );
    }

    #[test]
    fn bad_rdata_lengths() {
        let q = "x.example";
        let short_a = response(6, q, RecordType::A, 0, &[rr(QPTR, 1, &[1, 2, 3])]);
        assert_eq!(
            parse_response(&short_a, 6, q, RecordType::A),
            Err(WireError::BadRdata)
        );
        // A PTR name that ends before its rdata does.
        let q = "1.0.0.127.in-addr.arpa";
        let mut rdata = wire_name("a.example");
        rdata.push(0);
        let msg = response(6, q, RecordType::Ptr, 0, &[rr(QPTR, 12, &rdata)]);
        assert_eq!(
            parse_response(&msg, 6, q, RecordType::Ptr),
            Err(WireError::BadRdata)
        );
    }

    #[test]
    fn pointer_loops_and_forward_pointers_fail() {
        let q = "1.0.0.127.in-addr.arpa";
        // Self-pointer as the answer's owner, at offset len(msg).
        let base = response(8, q, RecordType::Ptr, 0, &[]);
        let at = base.len();
        let mut msg = base.clone();
        msg.extend_from_slice(&rr(
            &[0xc0 | (at >> 8) as u8, at as u8],
            12,
            &wire_name("a.b"),
        ));
        msg[6..8].copy_from_slice(&1u16.to_be_bytes());
        assert_eq!(
            parse_response(&msg, 8, q, RecordType::Ptr),
            Err(WireError::BadPointer)
        );

        // Two labels then a pointer back to their own start: a loop through labels.
        let mut msg = base.clone();
        msg.extend_from_slice(&rr(
            &[1, b'a', 0xc0 | (at >> 8) as u8, at as u8],
            12,
            &wire_name("a.b"),
        ));
        msg[6..8].copy_from_slice(&1u16.to_be_bytes());
        assert_eq!(
            parse_response(&msg, 8, q, RecordType::Ptr),
            Err(WireError::BadPointer)
        );

        // Pointer past the end.
        let mut msg = base;
        msg.extend_from_slice(&rr(&[0xff, 0xff], 12, &wire_name("a.b")));
        msg[6..8].copy_from_slice(&1u16.to_be_bytes());
        assert_eq!(
            parse_response(&msg, 8, q, RecordType::Ptr),
            Err(WireError::BadPointer)
        );
    }

    #[test]
    fn reserved_labels_and_long_names_fail() {
        let q = "1.0.0.127.in-addr.arpa";
        let msg = response(
            8,
            q,
            RecordType::Ptr,
            0,
            &[rr(&[0x40, 0], 12, &wire_name("a.b"))],
        );
        assert_eq!(
            parse_response(&msg, 8, q, RecordType::Ptr),
            Err(WireError::BadLabel)
        );
        let msg = response(
            8,
            q,
            RecordType::Ptr,
            0,
            &[rr(QPTR, 12, &[3, b'a', b'.', b'b', 0])],
        );
        assert_eq!(
            parse_response(&msg, 8, q, RecordType::Ptr),
            Err(WireError::BadLabel)
        );
        // 5 labels of 63: 320 octets.
        let mut long = Vec::new();
        for _ in 0..5 {
            long.push(63);
            long.extend_from_slice(&[b'x'; 63]);
        }
        long.push(0);
        let msg = response(8, q, RecordType::Ptr, 0, &[rr(QPTR, 12, &long)]);
        assert_eq!(
            parse_response(&msg, 8, q, RecordType::Ptr),
            Err(WireError::NameTooLong)
        );
    }

    /// Every prefix of a valid response, and every single-byte corruption of it, must come
    /// back as `Ok` or `Err`: the test passing at all shows there is no panic or endless loop.
    #[test]
    fn prefixes_and_corruptions_never_panic() {
        let q = "www.example.com";
        let target = wire_name("edge.example.net");
        let mut msg = response(1, q, RecordType::A, 0, &[rr(QPTR, TYPE_CNAME, &target)]);
        let at = msg.len() - target.len();
        msg.extend_from_slice(&rr(&[0xc0 | (at >> 8) as u8, at as u8], 1, &[192, 0, 2, 7]));
        msg[6..8].copy_from_slice(&2u16.to_be_bytes());
        assert!(parse_response(&msg, 1, q, RecordType::A).is_ok());

        for len in 0..msg.len() {
            assert!(
                parse_response(&msg[..len], 1, q, RecordType::A).is_err(),
                "prefix {len}"
            );
        }
        let mut rng = fastrand::Rng::with_seed(0x6d6f6174);
        for i in 0..msg.len() {
            for v in [0x00, 0xff, 0xc0, 0x3f, 0x40, rng.u8(..)] {
                let mut bad = msg.clone();
                bad[i] = v;
                let _ = parse_response(&bad, 1, q, RecordType::A);
            }
        }
        for _ in 0..20_000 {
            let len = rng.usize(..200);
            let mut junk: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            if junk.len() >= 12 {
                // Keep the header plausible so the fuzzing reaches the name parser.
                junk[0..2].copy_from_slice(&1u16.to_be_bytes());
                junk[2] = 0x81;
                junk[3] = 0x80;
                junk[4..6].copy_from_slice(&1u16.to_be_bytes());
            }
            let _ = parse_response(&junk, 1, q, RecordType::A);
            let _ = Reader { msg: &junk, pos: 0 }.name();
            // A valid header and question followed by random answers.
            let mut tail = response(1, q, RecordType::A, 0, &[]);
            tail[6..8].copy_from_slice(&rng.u16(..8).to_be_bytes());
            tail.extend(junk.iter().take(rng.usize(..=junk.len())));
            let _ = parse_response(&tail, 1, q, RecordType::A);
        }
    }
}
