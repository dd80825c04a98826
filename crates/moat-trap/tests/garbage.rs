//! Bad input never panics the trap's session, and it never invents a delivery: random and
//! mutated transcripts, split at random points.

use moat_trap::session::{Limits, Mode, Session, Step};

fn mutate(rng: &mut fastrand::Rng, base: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..rng.usize(..8) {
        if v.is_empty() {
            break;
        }
        let i = rng.usize(..v.len());
        match rng.u8(..4) {
            0 => v[i] = rng.u8(..),
            1 => {
                v.remove(i);
            }
            2 => v.insert(i, *b"\r\n.:<>= \0".get(rng.usize(..9)).unwrap()),
            _ => v.truncate(i),
        }
    }
    v
}

const TRANSCRIPT: &[u8] = b"EHLO bot\r\nAUTH PLAIN AGJvYgAxMjM0NTY=\r\nAUTH LOGIN\r\nYm9i\r\nMTIzNDU2\r\nSTARTTLS\r\nXFORWARD ADDR=1.2.3.4\r\nMAIL FROM:<a@b> SIZE=10 BODY=8BITMIME\r\nRCPT TO:<c@d> NOTIFY=NEVER\r\nDATA\r\nSubject: x\r\n\r\n..hi\r\n.\r\nRSET\r\nVRFY x\r\nBDAT 10 LAST\r\nQUIT\r\n";

#[test]
fn random_and_mutated_transcripts() {
    let mut rng = fastrand::Rng::with_seed(5);
    let mut delivered = 0;
    for round in 0..20_000 {
        let input: Vec<u8> = if round % 2 == 0 {
            mutate(&mut rng, TRANSCRIPT)
        } else {
            (0..rng.usize(..400)).map(|_| rng.u8(..)).collect()
        };
        let mode = if rng.bool() {
            Mode::Trap
        } else {
            Mode::Capture
        };
        let mut s = Session::new(Limits {
            mode,
            starttls: rng.bool(),
            max_size: 64,
            ..Limits::default()
        });
        let mut rest: &[u8] = &input;
        let mut closed = false;
        while !rest.is_empty() && !closed {
            let cut = rng.usize(..=rest.len());
            let (mut chunk, tail) = rest.split_at(cut);
            rest = tail;
            while !chunk.is_empty() {
                match s.feed(&mut chunk) {
                    Step::NeedMore => break,
                    Step::Reply(r) => assert!(r.ends_with("\r\n") && r.len() >= 5, "{r:?}"),
                    Step::Login(c) => {
                        let r = s.login_result(&c, rng.bool());
                        assert!(r.starts_with("235 ") || r.starts_with("535 "));
                    }
                    Step::Deliver(env, data) => {
                        assert!(!env.rcpt_to.is_empty());
                        assert!(data.len() <= 64);
                        delivered += 1;
                        s.delivered("X");
                    }
                    Step::StartTls(_) => {
                        s.tls_started();
                        chunk = &[];
                    }
                    Step::Close(r) => {
                        assert!(r.starts_with('2') || r.starts_with('4') || r.starts_with('5'));
                        closed = true;
                        break;
                    }
                }
            }
        }
    }
    // The mutations leave many transcripts whole enough to deliver: the test exercised DATA.
    assert!(delivered > 100, "{delivered}");
}
