//! A stub resolver over UDP: one question to one recursive server, nothing cached.
//!
//! Verification needs only PTR, A and AAAA answers from the host's recursive resolver, which
//! already caches and follows delegations; so this stays a thin wrapper around [`crate::wire`]
//! and a tokio socket rather than a full resolver library. Caching belongs to the caller
//! ([`crate::GoodBotVerifier`]), which knows how long a verdict may be trusted.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use thiserror::Error;
use tokio::net::UdpSocket;

use crate::wire::{self, Record, RecordType, WireError};

/// Large enough for any UDP answer a server may send us; without EDNS servers stay under 512
/// octets, but a datagram cut short by a small buffer would read as a malformed answer.
const RECV_BUF: usize = 4096;

/// Why a lookup produced no answer. Callers that only need "verified or not" treat all of
/// these as "not verified".
#[derive(Debug, Error)]
pub enum ResolveError {
    #[error("DNS socket error: {0}")]
    Io(#[from] io::Error),
    #[error("DNS server did not answer in time")]
    Timeout,
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// One recursive DNS server and how long to wait for each attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolver {
    pub server: SocketAddr,
    /// Per attempt; a query is sent at most twice, so a lookup takes at most twice this.
    pub timeout: Duration,
}

impl Resolver {
    /// Short enough that a lost datagram plus its retry still fit within the verifier's
    /// default 2 s budget, long enough for a recursive resolver with a cold cache.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(800);

    /// A resolver for `server` with [`Self::DEFAULT_TIMEOUT`].
    pub fn new(server: SocketAddr) -> Self {
        Resolver {
            server,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    /// The host's first nameserver ([`crate::host::system`]: `/etc/resolv.conf`, else the
    /// configured fallback, else 127.0.0.1:53). The host's resolver is the one operators
    /// already configure and trust, and it caches for every process on the machine.
    ///
    /// Reads the file synchronously the first time in the process: call it at start-up.
    pub fn from_system() -> Self {
        let dns = crate::host::system();
        let server = dns
            .nameservers
            .first()
            .copied()
            .unwrap_or_else(|| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53));
        Self::new(server)
    }

    /// The host names of `ip` (PTR), lowercased and without trailing dot; empty when there are
    /// none (NXDOMAIN or no PTR record).
    pub async fn ptr(&self, ip: IpAddr) -> Result<Vec<String>, ResolveError> {
        let records = self.query(&wire::reverse_name(ip), RecordType::Ptr).await?;
        Ok(records
            .into_iter()
            .filter_map(|r| match r {
                Record::Ptr(name) => Some(name),
                Record::Addr(_) => None,
            })
            .collect())
    }

    /// The AAAA (`v6`) or A addresses of `name`, following CNAMEs in the answer.
    pub async fn addrs(&self, name: &str, v6: bool) -> Result<Vec<IpAddr>, ResolveError> {
        let qtype = if v6 { RecordType::Aaaa } else { RecordType::A };
        let records = self.query(name, qtype).await?;
        Ok(records
            .into_iter()
            .filter_map(|r| match r {
                Record::Addr(ip) => Some(ip),
                Record::Ptr(_) => None,
            })
            .collect())
    }

    /// Sends the query from a fresh socket (so a fresh random source port, which together with
    /// the random id is what makes off-path spoofing impractical), waits up to `timeout`, and
    /// resends once. The retry keeps the id, so a late answer to the first datagram counts.
    async fn query(&self, name: &str, qtype: RecordType) -> Result<Vec<Record>, ResolveError> {
        let id = fastrand::u16(..);
        let query = wire::build_query(id, name, qtype)?;
        let local = match self.server {
            SocketAddr::V4(_) => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
            SocketAddr::V6(_) => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0),
        };
        let socket = UdpSocket::bind(local).await?;
        // Connecting makes the kernel drop datagrams from any other address.
        socket.connect(self.server).await?;
        let mut buf = vec![0u8; RECV_BUF];
        for attempt in 1..=2 {
            socket.send(&query).await?;
            let answer =
                tokio::time::timeout(self.timeout, receive(&socket, &mut buf, id, name, qtype));
            match answer.await {
                Ok(result) => return result,
                Err(_) => tracing::debug!(
                    server = %self.server, name, ?qtype, attempt, "DNS query timed out"
                ),
            }
        }
        Err(ResolveError::Timeout)
    }
}

/// Waits for the datagram that answers our query, skipping foreign ones (see
/// [`WireError::is_foreign`]).
async fn receive(
    socket: &UdpSocket,
    buf: &mut [u8],
    id: u16,
    name: &str,
    qtype: RecordType,
) -> Result<Vec<Record>, ResolveError> {
    loop {
        let len = socket.recv(buf).await?;
        let datagram = buf.get(..len).unwrap_or_default();
        match wire::parse_response(datagram, id, name, qtype) {
            Err(e) if e.is_foreign() => {
                tracing::debug!(error = %e, "ignoring foreign DNS datagram");
            }
            result => return result.map_err(ResolveError::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_system_uses_port_53() {
        assert_eq!(Resolver::from_system().server.port(), 53);
    }

    /// A server that sends a foreign datagram first, then a real answer: the resolver must
    /// skip the first and return the second; and it must retry after a lost first query.
    #[tokio::test]
    async fn skips_foreign_datagrams_and_retries() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let resolver = Resolver {
            server: server.local_addr().unwrap(),
            timeout: Duration::from_millis(300),
        };
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            // Drop the first query, as a lossy network would.
            let (_, _) = server.recv_from(&mut buf).await.unwrap();
            let (len, peer) = server.recv_from(&mut buf).await.unwrap();
            let mut answer = buf[..len].to_vec();
            answer[2] |= 0x80; // QR
            answer[6..8].copy_from_slice(&1u16.to_be_bytes());
            answer.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
            let mut foreign = answer.clone();
            foreign[0] ^= 0xff;
            server.send_to(&foreign, peer).await.unwrap();
            server.send_to(&answer, peer).await.unwrap();
        });
        let addrs = resolver.addrs("host.example", false).await.unwrap();
        assert_eq!(addrs, vec!["192.0.2.1".parse::<IpAddr>().unwrap()]);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn silent_server_times_out_after_two_attempts() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let resolver = Resolver {
            server: server.local_addr().unwrap(),
            timeout: Duration::from_millis(100),
        };
        let started = std::time::Instant::now();
        let err = resolver
            .ptr("192.0.2.1".parse().unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, ResolveError::Timeout), "{err}");
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(200) && elapsed < Duration::from_secs(2));
        let mut buf = [0u8; 512];
        // Both attempts arrived, with the same id.
        let (a, _) = server.try_recv_from(&mut buf).unwrap();
        let first = buf[..a].to_vec();
        let (b, _) = server.try_recv_from(&mut buf).unwrap();
        assert_eq!(first, buf[..b]);
    }
}
