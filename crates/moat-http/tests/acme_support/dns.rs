//! A DNS responder for pebble's `-dnsserver` flag: A queries for any name get 127.0.0.1, all
//! other types (AAAA, CAA, ...) an empty NOERROR, so validation always dials our listeners.

use std::net::SocketAddr;

use tokio::net::UdpSocket;

/// Binds a UDP socket on loopback and answers queries on it until the runtime shuts down.
pub async fn spawn_dns() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind DNS socket");
    let addr = socket.local_addr().expect("DNS socket address");
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            if let Some(reply) = answer(&buf[..len]) {
                let _ = socket.send_to(&reply, peer).await;
            }
        }
    });
    addr
}

/// Builds the reply to one query (RFC 1035 section 4.1); `None` for anything unparseable.
pub fn answer(query: &[u8]) -> Option<Vec<u8>> {
    let mut i = 12;
    loop {
        let len = usize::from(*query.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        if len & 0xc0 != 0 {
            return None; // compression pointers never appear in a question we are sent
        }
        i += len;
    }
    let qtype = u16::from_be_bytes([*query.get(i)?, *query.get(i + 1)?]);
    let question_end = i + 4;
    if query.len() < question_end {
        return None;
    }
    let is_a = qtype == 1;
    let mut reply = Vec::with_capacity(question_end + 16);
    reply.extend_from_slice(&query[..2]); // id
    reply.push(0x84 | (query[2] & 0x01)); // QR + AA, copy RD
    reply.push(0x80); // RA, NOERROR
    reply.extend_from_slice(&[0, 1, 0, u8::from(is_a), 0, 0, 0, 0]);
    reply.extend_from_slice(&query[12..question_end]);
    if is_a {
        // name pointer to the question, type A, class IN, TTL 60, 4 bytes: 127.0.0.1
        reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
    }
    Some(reply)
}
