//! Issue 17: the trap is a sensor on the engine's event bus. A login it lets in and a message
//! it captures reach the sink the composition root connects, with the client's address and
//! the login (never the password); a shutdown lets the session finish first.

use moat_config::{Trap as TrapConfig, TrapListener, TrapTls};
use moat_core::EventKind;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Seen = Arc<Mutex<Vec<(IpAddr, Option<String>, EventKind)>>>;

fn config(dir: &std::path::Path) -> TrapConfig {
    TrapConfig {
        quarantine_dir: dir.join("q"),
        quota_bytes: 1 << 30,
        hostname: "mx.trap.test".into(),
        tls_files: None,
        top_passwords: 100,
        kth_attempt: 3,
        max_sessions: 100,
        max_sessions_per_ip: 10,
        max_message_bytes: 1 << 20,
        max_recipients: 10,
        command_timeout: Duration::from_secs(10),
        session_timeout: Duration::from_secs(30),
        auth_failure_delay: Duration::ZERO,
        listeners: vec![TrapListener {
            name: "trap".into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            tls: TrapTls::None,
        }],
    }
}

fn say(w: &mut TcpStream, r: &mut BufReader<TcpStream>, line: &str) -> String {
    w.write_all(line.as_bytes()).unwrap();
    let mut reply = String::new();
    loop {
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        reply.push_str(&l);
        if l.len() < 4 || l.as_bytes()[3] == b' ' {
            return reply;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_and_captures_reach_the_event_sink() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let q = moat_trap::run::open_quarantine(&cfg).unwrap();
    let shutdown = moat_listen::Shutdown::new();
    let t = moat_trap::run::start(&cfg, dir.path(), q, None, &shutdown)
        .await
        .unwrap();
    let seen: Seen = Arc::default();
    let s = seen.clone();
    t.trap.set_events(Arc::new(move |ip, login, kind| {
        s.lock()
            .unwrap()
            .push((ip, login.map(str::to_string), kind))
    }));
    let addr = t.listeners[0].1;
    tokio::task::spawn_blocking(move || {
        let mut w = TcpStream::connect(addr).unwrap();
        let mut r = BufReader::new(w.try_clone().unwrap());
        let mut greeting = String::new();
        r.read_line(&mut greeting).unwrap();
        assert!(greeting.starts_with("220"));
        say(&mut w, &mut r, "EHLO bot.example\r\n");
        // AUTH PLAIN \0info@victim.example\0123456 (a top-100 password: let in).
        let reply = say(
            &mut w,
            &mut r,
            "AUTH PLAIN AGluZm9AdmljdGltLmV4YW1wbGUAMTIzNDU2\r\n",
        );
        assert!(reply.starts_with("235"), "{reply}");
        say(&mut w, &mut r, "MAIL FROM:<info@victim.example>\r\n");
        say(&mut w, &mut r, "RCPT TO:<someone@example.org>\r\n");
        say(&mut w, &mut r, "DATA\r\n");
        let reply = say(&mut w, &mut r, "Subject: hi\r\n\r\nspam\r\n.\r\n");
        assert!(reply.starts_with("250"), "{reply}");
        say(&mut w, &mut r, "QUIT\r\n");
    })
    .await
    .unwrap();
    assert!(shutdown.drain(Duration::from_secs(5)).await);
    let seen = seen.lock().unwrap();
    let local: IpAddr = "127.0.0.1".parse().unwrap();
    assert!(
        seen.iter().any(|(ip, login, k)| *ip == local
            && login.as_deref() == Some("info@victim.example")
            && *k == EventKind::TrapLogin { accepted: true }),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|(_, login, k)| matches!(k, EventKind::Captured { .. })
                && login.as_deref() == Some("info@victim.example")),
        "{seen:?}"
    );
}
