use super::*;

fn packet(code: u8, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    encode_command(code, data, &mut v);
    v
}

#[test]
fn a_postfix_conversation_decodes_across_any_split() {
    let mut wire = Vec::new();
    let mut optneg = Vec::new();
    for v in [6u32, 0x1ff, 0x1f_ffff] {
        optneg.extend_from_slice(&v.to_be_bytes());
    }
    wire.extend(packet(b'O', &optneg));
    wire.extend(packet(
        b'D',
        b"Cj\0mx.moat.test\0{daemon_name}\0ORIGINATING\0",
    ));
    wire.extend(packet(b'C', b"bot.example\x004\x30\x39127.0.0.9\0"));
    wire.extend(packet(b'H', b"client.example\0"));
    wire.extend(packet(b'D', b"M{auth_authen}\0bob\0i\0QABCD\0"));
    wire.extend(packet(b'M', b"<bob@moat.test>\0SIZE=100\0"));
    wire.extend(packet(b'R', b"<victim@outside.example>\0"));
    wire.extend(packet(b'T', b""));
    wire.extend(packet(b'L', b"Subject\0 hello\0"));
    wire.extend(packet(b'N', b""));
    wire.extend(packet(b'B', b"body\r\n"));
    wire.extend(packet(b'E', b""));
    wire.extend(packet(b'Q', b""));
    let expected = vec![
        Command::OptNeg {
            version: 6,
            actions: 0x1ff,
            protocol: 0x1f_ffff,
        },
        Command::Macro {
            stage: b'C',
            pairs: vec![
                ("j".into(), "mx.moat.test".into()),
                ("{daemon_name}".into(), "ORIGINATING".into()),
            ],
        },
        Command::Connect(Connect {
            hostname: "bot.example".into(),
            addr: Some("127.0.0.9".parse().unwrap()),
            port: 12345,
        }),
        Command::Helo("client.example".into()),
        Command::Macro {
            stage: b'M',
            pairs: vec![
                ("{auth_authen}".into(), "bob".into()),
                ("i".into(), "QABCD".into()),
            ],
        },
        Command::Mail(vec!["<bob@moat.test>".into(), "SIZE=100".into()]),
        Command::Rcpt(vec!["<victim@outside.example>".into()]),
        Command::Data,
        Command::Header {
            name: "Subject".into(),
            value: " hello".into(),
        },
        Command::EndOfHeaders,
        Command::Body(b"body\r\n".to_vec()),
        Command::EndOfMessage,
        Command::Quit,
    ];
    for split in [1usize, 2, 3, 5, 7, 64, wire.len()] {
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for chunk in wire.chunks(split) {
            d.feed(chunk);
            while let Some(c) = d.decode().unwrap() {
                got.push(c);
            }
        }
        assert_eq!(got, expected, "split {split}");
        assert_eq!(d.pending(), 0);
    }
}

#[test]
fn ipv6_unix_and_unknown_clients() {
    let c = parse(b'C', b"h\x006\x00\x19IPv6:2001:db8::1\0").unwrap();
    assert_eq!(
        c,
        Command::Connect(Connect {
            hostname: "h".into(),
            addr: Some("2001:db8::1".parse().unwrap()),
            port: 25
        })
    );
    let mapped = parse(b'C', b"h\x006\x00\x19::ffff:192.0.2.1\0").unwrap();
    assert!(
        matches!(mapped, Command::Connect(Connect { addr: Some(a), .. }) if a == "192.0.2.1".parse::<IpAddr>().unwrap())
    );
    for fam in [&b"h\0L"[..], b"h\0U"] {
        assert!(matches!(
            parse(b'C', fam).unwrap(),
            Command::Connect(Connect { addr: None, .. })
        ));
    }
}

#[test]
fn bad_input_is_an_error_never_a_panic() {
    assert_eq!(parse(b'O', b"short"), Err(CodecError::Malformed("OPTNEG")));
    assert_eq!(
        parse(b'C', b"no-nul"),
        Err(CodecError::Malformed("CONNECT"))
    );
    assert_eq!(
        parse(b'C', b"h\x004\x01"),
        Err(CodecError::Malformed("CONNECT"))
    );
    assert_eq!(parse(b'L', b""), Err(CodecError::Malformed("HEADER")));
    assert_eq!(parse(b'D', b""), Err(CodecError::Malformed("MACRO")));
    assert_eq!(parse(b'z', b""), Err(CodecError::UnknownCommand(b'z')));
    let mut d = Decoder::new();
    d.feed(&[0, 0, 0, 0]);
    assert_eq!(d.decode(), Err(CodecError::Empty));
    let mut d = Decoder::new();
    d.feed(&(MAX_PACKET as u32 + 1).to_be_bytes());
    assert_eq!(d.decode(), Err(CodecError::TooLarge(MAX_PACKET + 1)));
    // A macro with an odd number of strings keeps the whole pairs.
    assert_eq!(
        parse(b'D', b"Mi\0Q1\0dangling\0").unwrap(),
        Command::Macro {
            stage: b'M',
            pairs: vec![("i".into(), "Q1".into())]
        }
    );
}

#[test]
fn replies_encode_as_libmilter_expects() {
    let mut out = Vec::new();
    Reply::Continue.encode(&mut out);
    Reply::Discard.encode(&mut out);
    Reply::DelRcpt("<x@moat.test>".into()).encode(&mut out);
    Reply::ReplyCode("550 5.1.1 nope".into()).encode(&mut out);
    // An MTA that does not offer SETSYMLIST gets no macro lists.
    negotiate(
        0xff,
        0x1f_ffff,
        action::DELRCPT,
        proto::NR_HDR | 0x8000_0000,
        &[(stage::ENVFROM, "x")],
    )
    .encode(&mut out);
    let mut expected = vec![0, 0, 0, 1, b'c', 0, 0, 0, 1, b'd'];
    expected.extend_from_slice(&[0, 0, 0, 15, b'-']);
    expected.extend_from_slice(b"<x@moat.test>\0");
    expected.extend_from_slice(&[0, 0, 0, 16, b'y']);
    expected.extend_from_slice(b"550 5.1.1 nope\0");
    expected.extend_from_slice(&[0, 0, 0, 13, b'O', 0, 0, 0, 6, 0, 0, 0, 8, 0, 0, 0, 0x80]);
    assert_eq!(out, expected, "only offered flags are taken");
}

#[test]
fn macro_lists_are_sent_only_when_the_mta_lets_the_milter_choose() {
    let mut out = Vec::new();
    negotiate(
        0x1ff,
        0,
        action::DELRCPT,
        0,
        &[(stage::ENVFROM, "{auth_authen}"), (stage::CONNECT, "")],
    )
    .encode(&mut out);
    let mut want = vec![0, 0, 0, 36, b'O', 0, 0, 0, 6, 0, 0, 0x01, 0x08, 0, 0, 0, 0];
    want.extend_from_slice(&[0, 0, 0, 2]);
    want.extend_from_slice(b"{auth_authen}\0");
    want.extend_from_slice(&[0, 0, 0, 0, 0]);
    assert_eq!(out, want);
}
