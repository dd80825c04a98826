//! The trap's SMTP session fed arbitrary client bytes, split where the input says, in both
//! modes. Beyond "never panics": every reply is a well-formed SMTP reply line, a delivery always
//! has a recipient and respects the size cap, and nothing is processed after a close.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_trap::session::{Limits, Mode, Session, Step};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let mode = if ctl & 1 == 0 { Mode::Trap } else { Mode::Capture };
    let max_size = 64 + usize::from(ctl >> 2) * 16;
    let mut s = Session::new(Limits {
        mode,
        starttls: ctl & 2 != 0,
        max_size,
        max_rcpts: 5,
        ..Limits::default()
    });
    // Chunk boundaries: every byte 0xfe in the input ends a read (and is dropped).
    for mut chunk in rest.split(|b| *b == 0xfe) {
        while !chunk.is_empty() {
            match s.feed(&mut chunk) {
                Step::NeedMore => break,
                Step::Reply(r) => {
                    assert!(r.ends_with("\r\n") && r.len() >= 5);
                    assert!(r.as_bytes()[..3].iter().all(u8::is_ascii_digit));
                }
                Step::Login(c) => {
                    let accept = c.password.len() % 2 == 0;
                    let r = s.login_result(&c, accept);
                    assert!(r.starts_with(if accept { "235 " } else { "535 " }));
                }
                Step::Deliver(env, body) => {
                    assert!(!env.rcpt_to.is_empty() && env.rcpt_to.len() <= 5);
                    assert!(body.len() <= max_size);
                    let r = s.delivered("0123456789ABCDEF");
                    assert!(r.starts_with("250 2.0.0 Ok: queued as "));
                }
                Step::StartTls(r) => {
                    assert!(r.starts_with("220 "));
                    s.tls_started();
                    chunk = &[];
                }
                Step::Close(r) => {
                    assert!(r.ends_with("\r\n"));
                    return;
                }
            }
        }
    }
});
