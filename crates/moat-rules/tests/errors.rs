//! The errors an operator sees for broken rules: message, line, column and the rendered caret
//! for each kind of mistake.

use moat_rules::{Expr, ParseError};

/// Parses `src`, expecting failure, and checks the position and the start of the message.
fn fails(src: &str, line: usize, column: usize, msg: &str) -> ParseError {
    let e = match Expr::parse(src) {
        Ok(_) => panic!("expected an error for {src:?}"),
        Err(e) => e,
    };
    assert_eq!(
        (e.line, e.column),
        (line, column),
        "{src:?}: {}",
        e.render(src)
    );
    assert!(
        e.message.starts_with(msg),
        "{src:?}: got {:?}, wanted {msg:?}",
        e.message
    );
    e
}

#[test]
fn unknown_field_renders_a_caret() {
    let src = r#"http.usr_agent contains "x""#;
    let e = fails(src, 1, 1, "unknown field `http.usr_agent`");
    assert_eq!(e.offset, 0);
    assert_eq!(
        e.render(src),
        "error: unknown field `http.usr_agent`\n  http.usr_agent contains \"x\"\n  ^"
    );
    let src = "ssl and\n   http.usr_agent eq \"x\"";
    let e = fails(src, 2, 4, "unknown field");
    assert_eq!(e.offset, 11);
    assert_eq!(
        e.render(src),
        "error: unknown field `http.usr_agent`\n     http.usr_agent eq \"x\"\n     ^"
    );
    assert_eq!(
        e.to_string(),
        "unknown field `http.usr_agent` at line 2, column 4"
    );
}

#[test]
fn unterminated_string() {
    let src = "http.host eq \"abc";
    let e = fails(src, 1, 14, "unterminated string");
    assert_eq!(
        e.render(src),
        "error: unterminated string\n  http.host eq \"abc\n               ^"
    );
    fails(
        "ssl and\nhttp.host eq r#\"abc\"",
        2,
        14,
        "unterminated string",
    );
}

#[test]
fn bad_regex_points_at_the_literal() {
    let src = r#"ssl and http.user_agent matches "Chrome/(9""#;
    let e = fails(src, 1, 33, "invalid regex");
    assert!(e.message.contains("unclosed group"), "{}", e.message);
    assert!(e.render(src).ends_with(&format!("\n  {}^", " ".repeat(32))));
    fails(
        r#"http.user_agent ~ r"a{99999999}""#,
        1,
        19,
        "invalid regex",
    );
}

#[test]
fn type_mismatches() {
    fails(
        r#"ip.src contains "x""#,
        1,
        8,
        "`contains` does not apply to `ip.src` (an IP address)",
    );
    fails(
        "len(ssl) eq 1",
        1,
        5,
        "len() takes a string or a list, but `ssl` is a bool",
    );
    fails(
        "http.host eq 5",
        1,
        14,
        "expected a string to compare with `http.host`",
    );
    fails(r#"len(http.host) eq "5""#, 1, 19, "expected an integer");
    fails(r#"ssl eq "yes""#, 1, 8, "expected true or false");
    fails(
        r#"ssl contains "x""#,
        1,
        5,
        "`contains` does not apply to `ssl`",
    );
    fails(
        r#"len(http.host) matches "x""#,
        1,
        16,
        "`matches` does not apply",
    );
    fails("ip.src eq 10.0.0.0/8", 1, 11, "`eq` takes one address");
    fails(
        r#"ip.src in {10.0.0.0/8 "x"}"#,
        1,
        23,
        "expected an IP address or CIDR network",
    );
    fails(
        r#"lower(ip.src) eq "x""#,
        1,
        7,
        "lower() takes a string or a list",
    );
    fails(
        r#"starts_with(len(http.host), "1")"#,
        1,
        13,
        "starts_with() takes a string",
    );
    fails(r#"any(http.host eq "x")"#, 1, 5, "any() needs a list");
    fails("http.host", 1, 10, "expected an operator");
}

#[test]
fn unexpected_tokens() {
    let src = r#"http.host eq "a" "b""#;
    let e = fails(src, 1, 18, "unexpected `\"b\"`");
    assert!(e.render(src).ends_with("\n                   ^"));
    fails("ssl and and ssl", 1, 9, "unexpected `and`");
    fails("ssl and", 1, 8, "unexpected end of rule");
    fails(r#"http.host "a""#, 1, 11, "expected an operator");
    fails("http.host eq", 1, 13, "expected a value");
    fails("ssl )", 1, 5, "unexpected `)`");
    fails("foo(http.host) eq 1", 1, 1, "unknown function `foo`");
    fails(
        r#"http.request.headers["x"][*] eq "1""#,
        1,
        27,
        "`[*]` is only allowed inside any()",
    );
    fails(
        r#"http.request.headers["bad header"] eq "1""#,
        1,
        22,
        "invalid header name",
    );
    fails(
        r#"http.host[0] eq "1""#,
        1,
        10,
        "`http.host` cannot be indexed",
    );
    fails(
        "http.request.body.json eq \"1\"",
        1,
        24,
        "`http.request.body.json` needs a key",
    );
    fails(r#"http.host eq "a\d""#, 1, 16, "unknown escape");
    fails(
        "ssl\n  and http.host in {1..2 \"a\"}",
        2,
        21,
        "expected a string",
    );
}

#[test]
fn missing_paren() {
    let src = "(ssl and\n moat.banned";
    let e = fails(
        src,
        2,
        13,
        "expected `)` to close the `(` at line 1, column 1",
    );
    assert_eq!(
        e.render(src),
        format!("error: {}\n   moat.banned\n              ^", e.message)
    );
    fails(
        r#"lower(http.host eq "a""#,
        1,
        17,
        "expected `)` to close lower(",
    );
    fails(
        r#"any(http.request.headers.names[*] eq "a""#,
        1,
        41,
        "expected `)` to close any(",
    );
    fails(r#"starts_with(http.host "a")"#, 1, 23, "expected `,`");
    fails("ip.src in {10.0.0.0/8", 1, 22, "expected `}`");
}
