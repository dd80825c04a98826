//! The cheapest milter there can be, as a reference peer for `bench/milter.sh`: it answers
//! `accept` to `CONNECT`, after which Postfix involves it no further in the SMTP session, and
//! asks for nothing else (every other step negotiated away or without a reply). What Postfix
//! then pays per SMTP session (a connection, the negotiation, one round trip, quit) is the
//! floor under any milter's cost: Moat's figure is read against it. (A milter that skips every
//! step instead is dearer: Postfix still sends it the end of the message, from `cleanup`, and
//! waits for the answer.)

use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Packets are framed as the load generator frames them (length, command, data).
use crate::milter::packet;

/// Every `SMFIP_NO*` and `SMFIP_NR_*` flag of milter protocol 6 but `NOCONNECT` and
/// `NR_CONN`: `CONNECT` is sent and answered.
const SKIP_ALL: u32 = 0x2
    | 0x4
    | 0x8
    | 0x10
    | 0x20
    | 0x40
    | 0x80
    | 0x100
    | 0x200
    | 0x2000
    | 0x4000
    | 0x8000
    | 0x10000
    | 0x20000
    | 0x40000
    | 0x80000;

async fn conn<S: AsyncReadExt + AsyncWriteExt + Unpin>(mut s: S) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(8192);
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut at = 0;
        while buf.len() - at >= 5 {
            let len = u32::from_be_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
            if len == 0 || len > 1 << 20 {
                return Ok(());
            }
            if buf.len() - at < 4 + len {
                break;
            }
            let cmd = buf[at + 4];
            let data = &buf[at + 5..at + 4 + len];
            match cmd {
                b'O' if data.len() >= 12 => {
                    let offered = u32::from_be_bytes(data[8..12].try_into().unwrap());
                    let mut d = Vec::with_capacity(12);
                    d.extend_from_slice(&6u32.to_be_bytes());
                    d.extend_from_slice(&0u32.to_be_bytes());
                    d.extend_from_slice(&(offered & SKIP_ALL).to_be_bytes());
                    packet(b'O', &d, &mut out);
                }
                b'C' | b'E' => packet(b'a', &[], &mut out),
                b'Q' => {
                    s.write_all(&out).await?;
                    return Ok(());
                }
                // Macros, abort, quit-and-reuse: never answered. Anything else that still
                // reaches us (a step Postfix did not let us skip) gets `continue`.
                b'D' | b'A' | b'K' => {}
                _ => packet(b'c', &[], &mut out),
            }
            at += 4 + len;
        }
        buf.drain(..at);
        if !out.is_empty() {
            s.write_all(&out).await?;
            out.clear();
        }
    }
}

/// `listen`: host:port, or the path of a unix socket.
pub async fn serve(listen: String) -> anyhow::Result<()> {
    if let Ok(addr) = listen.parse::<SocketAddr>() {
        let l = TcpListener::bind(addr).await?;
        loop {
            let (s, _) = l.accept().await?;
            s.set_nodelay(true)?;
            tokio::spawn(conn(s));
        }
    }
    let l = tokio::net::UnixListener::bind(&listen)?;
    std::fs::set_permissions(&listen, std::os::unix::fs::PermissionsExt::from_mode(0o666))?;
    loop {
        let (s, _) = l.accept().await?;
        tokio::spawn(conn(s));
    }
}
