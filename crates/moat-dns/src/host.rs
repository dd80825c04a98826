//! Host names to addresses for Moat's outbound connections, without libc's resolver.
//!
//! Every outbound connection to a name (the upstream when it is configured by name, RDAP,
//! AbuseIPDB, Spamhaus, webhooks, the SMTP relay for reports, the ACME directory) resolves it
//! here. libc's `getaddrinfo` follows `/etc/nsswitch.conf`: a statically linked glibc (Moat's
//! `scripts/build-static.sh`) carries only the `files` and `dns` modules, and any other one
//! named there (systemd's `resolve`, LDAP, mDNS) is a shared library it would have to load from
//! the host's glibc, which a static binary must not do and cannot in an empty chroot or a
//! `FROM scratch` image. So the lookups are hickory-resolver's (pure Rust), reading the files
//! libc's `dns` and `files` read: `/etc/resolv.conf` for the nameservers and `/etc/hosts` for
//! static names; `localhost` answers loopback without either (RFC 6761).
//!
//! The host's DNS configuration ([`SystemDns`]) is process-wide, as it is for libc: it is read
//! once ([`init`] at start-up, or the first lookup), so every lookup agrees and the fallback
//! nameserver, for a host whose `/etc/resolv.conf` is missing or names none, is set in one
//! place. Changes to the file are picked up at the next start.
//!
//! [`Resolver`](crate::Resolver) (one question to one server, PTR included) stays the tool of
//! the good-bot check; it takes its server from here too.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::Name;
use hickory_resolver::TokioResolver;
use thiserror::Error;
use tokio::net::TcpStream;

/// Where libc reads the nameservers from, and so do we.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Where the nameservers of a [`SystemDns`] came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsSource {
    /// The `nameserver` lines of this file.
    ResolvConf(PathBuf),
    /// The configured fallback: the file was missing or named no usable nameserver.
    Fallback,
    /// No file, no fallback: a resolver on this host (127.0.0.1:53), as glibc assumes then.
    Loopback,
}

/// The host's DNS configuration: nameservers and the `resolv.conf` options a stub resolver
/// honours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemDns {
    /// Asked in this order (`rotate` spreads the load instead).
    pub nameservers: Vec<SocketAddr>,
    /// Domains tried for names with fewer than `ndots` dots (`search`, or the last `domain`).
    pub search: Vec<String>,
    pub ndots: usize,
    /// Per attempt.
    pub timeout: Duration,
    pub attempts: usize,
    pub rotate: bool,
    pub edns0: bool,
    pub source: DnsSource,
    /// Why the file was not used, when it was not (for the start-up log and `moat doctor dns`).
    pub note: Option<String>,
}

impl SystemDns {
    /// The port `nameserver` lines imply (resolv.conf cannot name another).
    pub const PORT: u16 = 53;

    /// Reads `path` (normally [`RESOLV_CONF`]); falls back to `fallback`, then to 127.0.0.1:53,
    /// when the file is missing, unreadable or names no usable nameserver.
    pub fn load(path: &Path, fallback: Option<SocketAddr>) -> Self {
        let text = std::fs::read(path);
        Self::from_resolv_conf(path, text, fallback)
    }

    /// [`Self::load`] on the file's contents (or the error reading it): no I/O, for tests.
    ///
    /// A file without nameservers keeps its `search` and `options`, as glibc does; IPv6
    /// link-local nameservers with a zone (`fe80::1%eth0`) are skipped, since a socket address
    /// cannot carry the zone by name.
    pub fn from_resolv_conf(
        path: &Path,
        text: io::Result<Vec<u8>>,
        fallback: Option<SocketAddr>,
    ) -> Self {
        let parsed = match &text {
            Ok(bytes) => {
                let (conf, errors) = resolv_conf::Config::parse_with_errors(bytes);
                for error in errors {
                    tracing::warn!(path = %path.display(), %error, "ignoring a resolv.conf line");
                }
                conf
            }
            Err(_) => resolv_conf::Config::new(),
        };
        let nameservers: Vec<SocketAddr> = parsed
            .nameservers
            .iter()
            .filter_map(|ip| match ip {
                resolv_conf::ScopedIp::V4(v4) => Some(IpAddr::V4(*v4)),
                resolv_conf::ScopedIp::V6(v6, None) => Some(IpAddr::V6(*v6)),
                resolv_conf::ScopedIp::V6(_, Some(_)) => None,
            })
            .map(|ip| SocketAddr::new(ip, Self::PORT))
            .collect();
        let mut dns = SystemDns {
            search: parsed
                .get_last_search_or_domain()
                .filter(|d| *d != "--")
                .map(|d| d.trim_end_matches('.').to_string())
                .filter(|d| !d.is_empty())
                .collect(),
            ndots: parsed.ndots as usize,
            timeout: Duration::from_secs(u64::from(parsed.timeout.max(1))),
            attempts: (parsed.attempts as usize).max(1),
            rotate: parsed.rotate,
            edns0: parsed.edns0,
            nameservers,
            source: DnsSource::ResolvConf(path.to_path_buf()),
            note: None,
        };
        if dns.nameservers.is_empty() {
            dns.note = Some(match &text {
                Ok(_) => format!("{} names no usable nameserver", path.display()),
                Err(e) => format!("{}: {e}", path.display()),
            });
            (dns.nameservers, dns.source) = match fallback {
                Some(addr) => (vec![addr], DnsSource::Fallback),
                None => (
                    vec![SocketAddr::new(Ipv4Addr::LOCALHOST.into(), Self::PORT)],
                    DnsSource::Loopback,
                ),
            };
        }
        dns
    }

    /// The same configuration in hickory-resolver's terms (for crates that build their own
    /// hickory resolver, such as mail-auth's for SPF and DKIM).
    pub fn hickory(&self) -> (ResolverConfig, ResolverOpts) {
        let servers = self
            .nameservers
            .iter()
            .map(|a| {
                let mut udp = ConnectionConfig::udp();
                udp.port = a.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = a.port();
                NameServerConfig::new(a.ip(), true, vec![udp, tcp])
            })
            .collect();
        // Names that do not parse are left out, as glibc ignores them.
        let search = self
            .search
            .iter()
            .filter_map(|d| Name::from_str_relaxed(d).ok())
            .collect();
        let mut opts = ResolverOpts::default();
        opts.ndots = self.ndots;
        opts.timeout = self.timeout;
        opts.attempts = self.attempts;
        opts.edns0 = self.edns0;
        if self.rotate {
            opts.server_ordering_strategy =
                hickory_resolver::config::ServerOrderingStrategy::RoundRobin;
        }
        (ResolverConfig::from_parts(None, search, servers), opts)
    }
}

impl fmt::Display for SystemDns {
    /// One line: where the nameservers came from, and which they are.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let servers: Vec<String> = self.nameservers.iter().map(|a| a.to_string()).collect();
        match &self.source {
            DnsSource::ResolvConf(p) => write!(f, "{}: ", p.display())?,
            DnsSource::Fallback => write!(f, "the configured fallback: ")?,
            DnsSource::Loopback => write!(f, "no resolv.conf, no fallback: ")?,
        }
        write!(f, "nameserver {}", servers.join(", "))?;
        if !self.search.is_empty() {
            write!(f, "; search {}", self.search.join(" "))?;
        }
        write!(
            f,
            "; ndots {}, timeout {}s, attempts {}",
            self.ndots,
            self.timeout.as_secs(),
            self.attempts
        )
    }
}

static SYSTEM: OnceLock<SystemDns> = OnceLock::new();

/// Reads the host's DNS configuration, once per process, with `fallback` for a host whose
/// `/etc/resolv.conf` names no nameserver; logs where the nameservers came from. Call it at
/// start-up, before anything resolves: a lookup made earlier has read the configuration
/// without the fallback, and then this only warns that the fallback came too late.
pub fn init(fallback: Option<SocketAddr>) -> &'static SystemDns {
    let mut fresh = false;
    let dns = SYSTEM.get_or_init(|| {
        fresh = true;
        load_logged(fallback)
    });
    if !fresh && fallback.is_some() && dns.source != DnsSource::Fallback && dns.note.is_some() {
        tracing::warn!("DNS fallback set after the first lookup; it applies from the next start");
    }
    dns
}

/// The host's DNS configuration, as [`init`] read it (read now, without a fallback, if nothing
/// called `init`).
pub fn system() -> &'static SystemDns {
    SYSTEM.get_or_init(|| load_logged(None))
}

fn load_logged(fallback: Option<SocketAddr>) -> SystemDns {
    let dns = SystemDns::load(Path::new(RESOLV_CONF), fallback);
    match (&dns.source, &dns.note) {
        (DnsSource::ResolvConf(_), _) => tracing::debug!(dns = %dns, "DNS configuration"),
        (DnsSource::Fallback, note) => {
            tracing::info!(dns = %dns, reason = note.as_deref(), "DNS: using the fallback")
        }
        (DnsSource::Loopback, note) => tracing::warn!(
            dns = %dns, reason = note.as_deref(),
            "DNS: no nameserver configured; asking 127.0.0.1:53 (server.dns_fallback names another)"
        ),
    }
    dns
}

/// Why a host name gave no address.
#[derive(Debug, Error)]
pub enum HostError {
    #[error("resolving {host}: {source}")]
    Lookup {
        host: String,
        #[source]
        source: NetError,
    },
    /// NXDOMAIN, or no A or AAAA record.
    #[error("{0}: no such host (no A or AAAA record)")]
    NoAddress(String),
    #[error("DNS resolver setup: {0}")]
    Setup(#[source] NetError),
}

impl From<HostError> for io::Error {
    fn from(e: HostError) -> Self {
        let kind = match e {
            HostError::Setup(_) => io::ErrorKind::Other,
            _ => io::ErrorKind::NotFound,
        };
        io::Error::new(kind, e)
    }
}

/// A caching stub resolver over a [`SystemDns`]. Cheap to clone (clones share the cache).
///
/// Keep one per tokio runtime: hickory runs each nameserver connection as a task on the
/// runtime of the lookup that opened it, and later lookups through the same resolver reuse it.
#[derive(Clone)]
pub struct HostResolver {
    inner: TokioResolver,
}

impl fmt::Debug for HostResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HostResolver")
    }
}

/// A hickory resolver for `config`, built so that it works where the system has no CA
/// certificates (a `FROM scratch` image, a bare chroot): hickory sets up a TLS client for
/// DNS over TLS whether it is used or not, from the system's roots, and fails without any.
/// Moat only speaks plain DNS to the configured nameservers, so that client gets no roots.
/// For every hickory resolver in Moat (mail-auth's for SPF and DKIM too).
pub fn build_resolver(
    config: ResolverConfig,
    opts: ResolverOpts,
) -> Result<TokioResolver, HostError> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let no_dot = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HostError::Setup(NetError::Msg(e.to_string())))?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    TokioResolver::builder_with_config(config, TokioRuntimeProvider::new())
        .with_options(opts)
        .with_tls_config(no_dot)
        .build()
        .map_err(HostError::Setup)
}

impl HostResolver {
    /// A resolver asking `dns`'s nameservers; `/etc/hosts` is read now.
    pub fn new(dns: &SystemDns) -> Result<Self, HostError> {
        let (config, opts) = dns.hickory();
        Ok(HostResolver {
            inner: build_resolver(config, opts)?,
        })
    }

    /// A resolver over the host's configuration ([`system`]).
    pub fn system() -> Result<Self, HostError> {
        Self::new(system())
    }

    /// The addresses of `host` (IPv4 first; AAAA is asked only when there is no A record, so a
    /// host without IPv6 routes is not sent to an address it cannot reach). An address literal,
    /// bracketed or not, is returned as it is, with no query.
    pub async fn lookup(&self, host: &str) -> Result<Vec<IpAddr>, HostError> {
        let literal = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
        if let Ok(ip) = literal.unwrap_or(host).parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let found = self.inner.lookup_ip(host).await.map_err(|source| {
            if source.is_no_records_found() {
                HostError::NoAddress(host.to_string())
            } else {
                HostError::Lookup {
                    host: host.to_string(),
                    source,
                }
            }
        })?;
        let addrs: Vec<IpAddr> = found.iter().collect();
        if addrs.is_empty() {
            return Err(HostError::NoAddress(host.to_string()));
        }
        Ok(addrs)
    }

    /// Connects to `host:port`, trying each address in turn until one accepts; the error is the
    /// last address's.
    pub async fn connect(&self, host: &str, port: u16) -> io::Result<TcpStream> {
        let mut last = None;
        for ip in self.lookup(host).await? {
            match TcpStream::connect(SocketAddr::new(ip, port)).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::ErrorKind::NotFound.into()))
    }
}

/// hyper-util's `HttpConnector::new_with_resolver` takes a `tower::Service<Name>`: this makes
/// its HTTP clients resolve here instead of through `getaddrinfo`. The port is left 0, which
/// the connector replaces with the URL's.
impl tower_service::Service<hyper_util::client::legacy::connect::dns::Name> for HostResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = HostError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, HostError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), HostError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: hyper_util::client::legacy::connect::dns::Name) -> Self::Future {
        let resolver = self.clone();
        Box::pin(async move {
            let addrs = resolver.lookup(name.as_str()).await?;
            let socket_addrs: Vec<SocketAddr> =
                addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect();
            Ok(socket_addrs.into_iter())
        })
    }
}

thread_local! {
    /// One resolver (and cache) per thread, for [`connect_tcp`]: Moat's proxy workers each run
    /// one single-threaded runtime for their whole life, which is what [`HostResolver`] needs.
    static THREAD_RESOLVER: RefCell<Option<HostResolver>> = const { RefCell::new(None) };
}

/// Connects to `authority` (`host:port`, `[v6]:port` or `v4:port`), as
/// `TcpStream::connect(authority)` would but without `getaddrinfo`: an address connects at
/// once, a name is resolved through this thread's [`HostResolver`].
pub async fn connect_tcp(authority: &str) -> io::Result<TcpStream> {
    if let Ok(addr) = authority.parse::<SocketAddr>() {
        return TcpStream::connect(addr).await;
    }
    let (host, port) = split_authority(authority).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{authority:?} is not host:port"),
        )
    })?;
    let resolver = THREAD_RESOLVER.with(|cell| {
        let mut slot = cell.borrow_mut();
        match slot.as_ref() {
            Some(r) => Ok(r.clone()),
            None => {
                let r = HostResolver::system()?;
                *slot = Some(r.clone());
                Ok::<_, HostError>(r)
            }
        }
    })?;
    resolver.connect(host, port).await
}

/// `host:port` split at the last colon; the host may be a bracketed IPv6 address.
fn split_authority(authority: &str) -> Option<(&str, u16)> {
    let (host, port) = authority.rsplit_once(':')?;
    let port = port.parse().ok()?;
    (!host.is_empty()).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, fallback: Option<&str>) -> SystemDns {
        SystemDns::from_resolv_conf(
            Path::new("/etc/resolv.conf"),
            Ok(text.as_bytes().to_vec()),
            fallback.map(|f| f.parse().unwrap()),
        )
    }

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn nameservers_search_and_options_from_resolv_conf() {
        let dns = parse(
            "# generated by NetworkManager\n; a comment\nsearch corp.example lan.\n\
             nameserver fe80::1%eth0\nnameserver 10.0.0.2\n  nameserver   2001:db8::53 \n\
             options ndots:2 timeout:3 attempts:4 rotate edns0\n",
            Some("9.9.9.9:53"),
        );
        assert_eq!(
            dns.nameservers,
            addrs(&["10.0.0.2:53", "[2001:db8::53]:53"])
        );
        assert_eq!(dns.search, ["corp.example", "lan"]);
        assert_eq!((dns.ndots, dns.attempts), (2, 4));
        assert_eq!(dns.timeout, Duration::from_secs(3));
        assert!(dns.rotate && dns.edns0);
        assert_eq!(
            dns.source,
            DnsSource::ResolvConf(PathBuf::from("/etc/resolv.conf"))
        );
        assert_eq!(dns.note, None);
    }

    #[test]
    fn glibc_defaults_when_the_file_sets_no_options() {
        let dns = parse("nameserver 192.0.2.53\n", None);
        assert_eq!((dns.ndots, dns.attempts), (1, 2));
        assert_eq!(dns.timeout, Duration::from_secs(5));
        assert!(dns.search.is_empty() && !dns.rotate);
        // The last of `domain` and `search` wins, as in glibc.
        let dns = parse(
            "search a.example\ndomain b.example\nnameserver 192.0.2.53\n",
            None,
        );
        assert_eq!(dns.search, ["b.example"]);
    }

    #[test]
    fn missing_file_uses_the_fallback() {
        let missing = Err(io::Error::from(io::ErrorKind::NotFound));
        let dns = SystemDns::from_resolv_conf(
            Path::new("/etc/resolv.conf"),
            missing,
            Some("192.0.2.1:5353".parse().unwrap()),
        );
        assert_eq!(dns.nameservers, addrs(&["192.0.2.1:5353"]));
        assert_eq!(dns.source, DnsSource::Fallback);
        assert!(dns
            .note
            .as_deref()
            .unwrap()
            .starts_with("/etc/resolv.conf: "));
        assert_eq!(dns.ndots, 1);
    }

    #[test]
    fn file_without_usable_nameserver_uses_the_fallback_and_keeps_search() {
        let dns = parse(
            "search corp.example\n#nameserver 1.1.1.1\nnameserver fe80::1%eth0\n",
            Some("[2001:db8::1]:53"),
        );
        assert_eq!(dns.nameservers, addrs(&["[2001:db8::1]:53"]));
        assert_eq!(dns.source, DnsSource::Fallback);
        assert_eq!(dns.search, ["corp.example"]);
        assert_eq!(
            dns.note.as_deref(),
            Some("/etc/resolv.conf names no usable nameserver")
        );
    }

    #[test]
    fn nothing_configured_asks_loopback_like_glibc() {
        let dns = parse("", None);
        assert_eq!(dns.nameservers, addrs(&["127.0.0.1:53"]));
        assert_eq!(dns.source, DnsSource::Loopback);
    }

    #[test]
    fn garbage_lines_are_skipped_not_fatal() {
        let dns = parse(
            "nameserver not-an-address\nfrobnicate\nnameserver 192.0.2.7\n",
            None,
        );
        assert_eq!(dns.nameservers, addrs(&["192.0.2.7:53"]));
    }

    #[test]
    fn hickory_config_keeps_ports_order_and_options() {
        let mut dns = parse("search corp.example\noptions ndots:3 rotate\n", None);
        dns.nameservers = addrs(&["127.0.0.1:5353", "[::1]:53"]);
        let (config, opts) = dns.hickory();
        let servers = config.name_servers();
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].ip, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert!(servers[0].connections.iter().all(|c| c.port == 5353));
        assert!(servers[1].connections.iter().all(|c| c.port == 53));
        assert_eq!(config.search()[0].to_ascii(), "corp.example");
        assert_eq!(opts.ndots, 3);
        assert_eq!(
            opts.server_ordering_strategy,
            hickory_resolver::config::ServerOrderingStrategy::RoundRobin
        );
    }

    #[test]
    fn display_says_where_the_servers_came_from() {
        let dns = parse("", Some("192.0.2.1:53"));
        assert_eq!(
            dns.to_string(),
            "the configured fallback: nameserver 192.0.2.1:53; ndots 1, timeout 5s, attempts 2"
        );
    }

    #[test]
    fn authorities() {
        assert_eq!(split_authority("ghost:2368"), Some(("ghost", 2368)));
        assert_eq!(split_authority("[::1]:80"), Some(("[::1]", 80)));
        assert_eq!(split_authority("ghost"), None);
        assert_eq!(split_authority(":80"), None);
        assert_eq!(split_authority("ghost:http"), None);
    }

    /// Literals and `localhost` need no nameserver at all (the one configured here is a
    /// discard address that never answers).
    #[tokio::test]
    async fn literals_and_localhost_need_no_server() {
        let mut dns = parse("", None);
        dns.nameservers = addrs(&["127.0.0.1:9"]);
        dns.timeout = Duration::from_millis(200);
        let r = HostResolver::new(&dns).unwrap();
        assert_eq!(
            r.lookup("192.0.2.1").await.unwrap(),
            ["192.0.2.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            r.lookup("[2001:db8::1]").await.unwrap(),
            ["2001:db8::1".parse::<IpAddr>().unwrap()]
        );
        let local = r.lookup("localhost").await.unwrap();
        assert!(
            local.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)),
            "{local:?}"
        );
        assert!(local.iter().all(IpAddr::is_loopback), "{local:?}");
    }

    #[tokio::test]
    async fn connect_tcp_takes_addresses_and_localhost() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        connect_tcp(&format!("127.0.0.1:{port}")).await.unwrap();
        connect_tcp(&format!("localhost:{port}")).await.unwrap();
        let err = connect_tcp("no-port").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
