//! The listener's refusals and its drain, over real loopback sockets (issue 17).

use moat_listen::{AtCap, Listener, ProxySettings, Settings, Shutdown};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Echoes the client address the listener worked out, then waits for the shutdown.
async fn start(settings: Settings, shutdown: &Shutdown) -> SocketAddr {
    let l = Listener::tcp("127.0.0.1:0".parse().unwrap(), settings)
        .await
        .unwrap();
    let addr = l.local_addr().unwrap();
    let s = shutdown.clone();
    shutdown.spawn(l.serve(shutdown.clone(), move |mut c| {
        let s = s.clone();
        async move {
            let line = format!("client {}\n", c.client.unwrap());
            let _ = c.stream.write_all(line.as_bytes()).await;
            // A conversation that ends when the client leaves or the process shuts down.
            let mut buf = [0u8; 64];
            tokio::select! {
                _ = c.stream.read(&mut buf) => {}
                _ = s.cancelled() => {
                    let _ = c.stream.write_all(b"bye\n").await;
                }
            }
        }
    }));
    addr
}

async fn connect_from(src: &str, to: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(format!("{src}:0").parse().unwrap()).unwrap();
    sock.connect(to).await.unwrap()
}

async fn read_some(s: &mut TcpStream) -> String {
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("an answer or a close")
        .unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn per_address_cap_refuses_with_the_refusal_line_and_frees_on_close() {
    let shutdown = Shutdown::new();
    let mut s = Settings::new("test", 100);
    s.max_per_ip = 2;
    s.refusal = b"421 too many\r\n";
    let addr = start(s, &shutdown).await;
    let mut a = connect_from("127.0.0.2", addr).await;
    let mut b = connect_from("127.0.0.2", addr).await;
    assert!(read_some(&mut a).await.starts_with("client 127.0.0.2:"));
    assert!(read_some(&mut b).await.starts_with("client 127.0.0.2"));
    let mut c = connect_from("127.0.0.2", addr).await;
    assert_eq!(read_some(&mut c).await, "421 too many\r\n");
    // Another address is not affected by the first one's cap.
    let mut d = connect_from("127.0.0.3", addr).await;
    assert!(read_some(&mut d).await.starts_with("client 127.0.0.3"));
    // A closed connection gives its place back.
    drop(b);
    let mut again = None;
    for _ in 0..50 {
        let mut e = connect_from("127.0.0.2", addr).await;
        if read_some(&mut e).await.starts_with("client 127.0.0.2") {
            again = Some(e);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        again.is_some(),
        "the place of a closed connection is free again"
    );
    assert!(shutdown.drain(Duration::from_secs(5)).await);
    assert_eq!(read_some(&mut a).await, "bye\n");
}

#[tokio::test]
async fn total_cap_refuses_when_set_to_refuse() {
    let shutdown = Shutdown::new();
    let mut s = Settings::new("test", 1);
    s.at_cap = AtCap::Refuse;
    s.refusal = b"421 busy\r\n";
    let addr = start(s, &shutdown).await;
    let mut a = connect_from("127.0.0.4", addr).await;
    assert!(read_some(&mut a).await.starts_with("client"));
    let mut b = connect_from("127.0.0.5", addr).await;
    assert_eq!(read_some(&mut b).await, "421 busy\r\n");
    shutdown.drain(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_gate_closes_a_banned_address_before_any_protocol_code() {
    let shutdown = Shutdown::new();
    let mut s = Settings::new("test", 100);
    s.gate = Some(Arc::new(|ip| ip.to_string() == "127.0.0.66"));
    let addr = start(s, &shutdown).await;
    let mut banned = connect_from("127.0.0.66", addr).await;
    assert_eq!(read_some(&mut banned).await, "", "closed without a word");
    let mut ok = connect_from("127.0.0.67", addr).await;
    assert!(read_some(&mut ok).await.starts_with("client 127.0.0.67"));
    shutdown.drain(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn proxy_header_from_a_trusted_peer_names_the_client_and_the_gate_checks_it() {
    let shutdown = Shutdown::new();
    let mut s = Settings::new("test", 100);
    s.proxy = Some(ProxySettings {
        trusted: vec!["127.0.0.10/32".parse().unwrap()],
        timeout: Duration::from_secs(2),
    });
    s.gate = Some(Arc::new(|ip| ip.to_string() == "203.0.113.9"));
    let addr = start(s, &shutdown).await;
    let mut p = connect_from("127.0.0.10", addr).await;
    p.write_all(b"PROXY TCP4 198.51.100.7 127.0.0.1 4000 25\r\n")
        .await
        .unwrap();
    assert_eq!(read_some(&mut p).await, "client 198.51.100.7:4000\n");
    let mut banned = connect_from("127.0.0.10", addr).await;
    banned
        .write_all(b"PROXY TCP4 203.0.113.9 127.0.0.1 4000 25\r\n")
        .await
        .unwrap();
    assert_eq!(read_some(&mut banned).await, "");
    // An untrusted peer's PROXY line is not read as one: it is the client itself.
    let mut direct = connect_from("127.0.0.11", addr).await;
    direct
        .write_all(b"PROXY TCP4 198.51.100.8 127.0.0.1 4000 25\r\n")
        .await
        .unwrap();
    assert!(read_some(&mut direct)
        .await
        .starts_with("client 127.0.0.11"));
    // A trusted peer sending garbage is closed.
    let mut bad = connect_from("127.0.0.10", addr).await;
    bad.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    assert_eq!(read_some(&mut bad).await, "");
    shutdown.drain(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn shutdown_stops_accepting_and_lets_open_connections_finish() {
    let shutdown = Shutdown::new();
    let addr = start(Settings::new("test", 100), &shutdown).await;
    let mut a = connect_from("127.0.0.20", addr).await;
    assert!(read_some(&mut a).await.starts_with("client"));
    assert!(shutdown.drain(Duration::from_secs(5)).await);
    assert_eq!(
        read_some(&mut a).await,
        "bye\n",
        "the open one finished its exchange"
    );
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listening socket is closed"
    );
}
