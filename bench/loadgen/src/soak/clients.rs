//! The browser proof and the trap's SMTP sessions as the soak's clients run them, and the
//! scripted sign-up POST (one connection each).

use super::*;

pub(super) async fn decoy(ctx: &Ctx, n: u64) -> Result<Duration, String> {
    let src = lo(DECOY_NET.0, (n % u64::from(DECOY_NET.1)) as u32);
    let mut send = http_conn(src, ctx.a.http).await.map_err(str::to_string)?;
    let body = format!(
        r#"{{"email":"victim{}@example.com","emailType":"signup"}}"#,
        fastrand::u32(..VICTIMS)
    );
    let req = http::Request::post("/members/api/send-magic-link/")
        .header(header::HOST, &ctx.host)
        .header(header::USER_AGENT, SCRIPT_UA)
        .header(header::ACCEPT, "*/*")
        .header(header::ACCEPT_ENCODING, "gzip, deflate")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let r = exchange(&mut send, req).await.map_err(str::to_string)?;
    if r.status != http::StatusCode::CREATED || &r.body[..] != b"Created." {
        return Err(format!("status {} (not the decoy)", r.status.as_u16()));
    }
    Ok(Duration::ZERO)
}

/// The smallest nonce from 0 up whose `SHA-256(challenge ":" nonce)` has `bits` leading zero
/// bits (what `crates/moat-proof/src/challenge.rs` checks and `/.moat/proof.js` computes).
pub(super) fn solve(challenge: &str, bits: u32) -> Option<u64> {
    use ring::digest::{Context, SHA256};
    let mut base = Context::new(&SHA256);
    base.update(challenge.as_bytes());
    base.update(b":");
    let mut digits = [0u8; 20];
    for nonce in 0..(1u64 << 32) {
        let mut c = base.clone();
        let mut k = digits.len();
        let mut v = nonce;
        loop {
            k -= 1;
            digits[k] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        c.update(&digits[k..]);
        let h = c.finish();
        let mut zeros = 0;
        for &b in h.as_ref() {
            if b == 0 {
                zeros += 8;
            } else {
                zeros += b.leading_zeros();
                break;
            }
        }
        if zeros >= bits {
            return Some(nonce);
        }
    }
    None
}

/// One browser earning and using clearance. Returns the time spent solving, which the
/// latency leaves out.
pub(super) async fn proof(ctx: &Ctx, n: u64) -> Result<Duration, String> {
    let src = lo(PROOF_NET.0, (n % u64::from(PROOF_NET.1)) as u32);
    let mut send = http_conn(src, ctx.a.http).await.map_err(str::to_string)?;
    let r = exchange(
        &mut send,
        get(&ctx.host, "/.moat/challenge", BROWSER_UA, "*/*", None),
    )
    .await
    .map_err(|e| format!("challenge: {e}"))?;
    if r.status != http::StatusCode::OK {
        return Err(format!("challenge: status {}", r.status.as_u16()));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&r.body).map_err(|_| "challenge: not JSON".to_string())?;
    let challenge = v["challenge"]
        .as_str()
        .ok_or("challenge: none offered")?
        .to_string();
    let bits = v["difficulty"].as_u64().ok_or("challenge: no difficulty")?;
    ctx.stats.answer(Kind::Proof, &format!("difficulty {bits}"));
    if bits > MAX_SOLVE_BITS {
        return Err(format!("difficulty {bits}, too high to solve here"));
    }
    let t = Instant::now();
    let c2 = challenge.clone();
    let nonce = tokio::task::spawn_blocking(move || solve(&c2, bits as u32))
        .await
        .map_err(|_| "solver failed".to_string())?
        .ok_or("no nonce found")?;
    let solving = t.elapsed();
    let answer = serde_json::json!({"challenge": challenge, "nonce": nonce.to_string()});
    let req = http::Request::post("/.moat/verify")
        .header(header::HOST, &ctx.host)
        .header(header::USER_AGENT, BROWSER_UA)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ORIGIN, format!("http://{}", ctx.host))
        .body(Full::new(Bytes::from(answer.to_string())))
        .map_err(|e| e.to_string())?;
    let r = exchange(&mut send, req)
        .await
        .map_err(|e| format!("verify: {e}"))?;
    if r.status != http::StatusCode::OK {
        return Err(format!("verify: status {}", r.status.as_u16()));
    }
    let cookie = r
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("moat_clearance="))
        .and_then(|v| v.split(';').next())
        .ok_or("verify: no clearance cookie")?
        .to_string();
    let r = exchange(
        &mut send,
        get(
            &ctx.host,
            "/.moat/challenge",
            BROWSER_UA,
            "*/*",
            Some(&cookie),
        ),
    )
    .await
    .map_err(|e| format!("cleared check: {e}"))?;
    if !r.body.windows(14).any(|w| w == b"\"cleared\":true") {
        return Err("the clearance cookie is not accepted".into());
    }
    let path = format!("/p/{}/", fastrand::u32(..PAGES));
    let r = exchange(
        &mut send,
        get(&ctx.host, &path, BROWSER_UA, "text/html", Some(&cookie)),
    )
    .await
    .map_err(|e| format!("page: {e}"))?;
    if r.status != http::StatusCode::OK {
        return Err(format!("page with clearance: status {}", r.status.as_u16()));
    }
    Ok(solving)
}

/// The code of the next (possibly multi-line) SMTP reply.
pub(super) async fn smtp_reply<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    line: &mut String,
) -> Result<u16, String> {
    for _ in 0..64 {
        line.clear();
        let k = (&mut *r)
            .take(2048)
            .read_line(line)
            .await
            .map_err(|e| format!("read: {}", e.kind()))?;
        if k == 0 {
            return Err("closed by the trap".into());
        }
        if line.as_bytes().get(3) == Some(&b'-') {
            continue;
        }
        return line
            .get(..3)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| "malformed reply".to_string());
    }
    Err("reply too long".into())
}

pub(super) async fn smtp(ctx: &Ctx, n: u64) -> Result<Duration, String> {
    let src = lo(SMTP_NET.0, (n % u64::from(SMTP_NET.1)) as u32);
    let st = connect(Some(src), ctx.a.trap)
        .await
        .map_err(|e| format!("connect: {}", e.kind()))?;
    let (r, mut w) = st.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::with_capacity(256);
    let k = n % CONTENTS;
    let message = format!(
        "From: \"Prize Desk\" <promo{k}@spam{k}.example>\r\nTo: undisclosed-recipients:;\r\n\
         Subject: You won offer {k}\r\nMessage-ID: <run{k}@spam{k}.example>\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\r\n\
         Claim your prize at http://promo{k}.spam{k}.example/claim?id={k}\r\n\
         Unsubscribe: http://unsub.spam{k}.example/\r\n.\r\n"
    );
    let steps: [(String, u16); 7] = [
        (String::new(), 220),
        (format!("EHLO bot{}.example.net\r\n", n % 500), 250),
        (format!("MAIL FROM:<promo{k}@spam{k}.example>\r\n"), 250),
        (
            format!(
                "RCPT TO:<victim{}@example.org>\r\n",
                fastrand::u32(..VICTIMS)
            ),
            250,
        ),
        ("DATA\r\n".into(), 354),
        (message, 250),
        ("QUIT\r\n".into(), 221),
    ];
    for (i, (send, want)) in steps.iter().enumerate() {
        if !send.is_empty() {
            w.write_all(send.as_bytes())
                .await
                .map_err(|e| format!("write: {}", e.kind()))?;
        }
        let code = smtp_reply(&mut r, &mut line).await?;
        if code != *want {
            return Err(format!("step {i}: {code} instead of {want}"));
        }
    }
    Ok(Duration::ZERO)
}
