//! Forward-confirmed reverse DNS against a real DNS server, dnsmasq, on a free local port.
//!
//! Hand-made packets prove the parser; only a real server proves that the queries we send are
//! ones a server understands and that its real answers (compression, flags, REFUSED for names it
//! does not serve) lead to the right verdicts. Needs the `dnsmasq` binary (Debian package
//! `dnsmasq-base`, installed by scripts/install-test-deps.sh); without it these tests fail rather
//! than skip, so a CI machine that lacks it cannot pass silently.

use std::fs;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use moat_dns::host::DnsSource;
use moat_dns::{GoodBotVerifier, HostError, HostResolver, Resolver, SystemDns, VerifierConfig};

const GOOGLEBOT_UA: &str =
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
const BINGBOT_UA: &str = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)";
const BROWSER_UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

/// The zone the server holds. `host-record` creates the A/AAAA record and the matching PTR.
const RECORDS: &[&str] = &[
    // The real crawler.
    "--host-record=crawl-66-249-66-1.googlebot.com,127.0.0.66",
    // Spoofer 1: a PTR into googlebot.com that the zone does not back with an A record
    // (googlebot.com is `--local`, so the forward lookup gets NXDOMAIN).
    "--ptr-record=67.0.0.127.in-addr.arpa,crawl-fake.googlebot.com",
    // Spoofer 2: a PTR into googlebot.com whose A record points elsewhere.
    "--ptr-record=68.0.0.127.in-addr.arpa,crawl-other.googlebot.com",
    "--address=/crawl-other.googlebot.com/127.0.0.99",
    // Spoofer 3: a PTR into google.com, a zone this server refuses (REFUSED, an error).
    "--ptr-record=72.0.0.127.in-addr.arpa,rate-limited-proxy-1.google.com",
    // Spoofer 4: forward-confirmed, but in a look-alike zone.
    "--host-record=crawl.evilgooglebot.com,127.0.0.69",
    // A real Bing crawler, to check that claims are matched to the right bot's zones.
    "--host-record=msnbot-127-0-0-70.search.msn.com,127.0.0.70",
    // IPv6: ::1 is the only loopback address, so it stands for a crawler's IPv6 address.
    "--host-record=crawl-v6.googlebot.com,::1",
    "--local=/googlebot.com/",
];

/// A running dnsmasq, killed when dropped so a failing test leaves no process behind.
struct Dnsmasq {
    child: Child,
    addr: SocketAddr,
    log: tempfile::NamedTempFile,
}

impl Dnsmasq {
    async fn start() -> Dnsmasq {
        match Command::new("dnsmasq").arg("--version").output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!("`dnsmasq --version` failed: {out:?}"),
            Err(e) if e.kind() == ErrorKind::NotFound => panic!(
                "dnsmasq is not installed; these tests need a real DNS server. \
                 Install it with `apt-get install -y dnsmasq-base` or scripts/install-test-deps.sh"
            ),
            Err(e) => panic!("cannot run dnsmasq: {e}"),
        }
        // The free port can be taken between probing and dnsmasq binding it (dnsmasq also
        // needs the TCP port), so try a few.
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_udp_port();
            let log = tempfile::NamedTempFile::new().expect("temp file");
            let child = Command::new("dnsmasq")
                .args([
                    "--no-daemon",
                    "--keep-in-foreground",
                    "--no-resolv",
                    "--no-hosts",
                    "--listen-address=127.0.0.1",
                    "--bind-interfaces",
                    "--conf-file=/dev/null",
                    "--log-queries",
                    "--log-facility=-",
                ])
                .arg(format!("--port={port}"))
                .args(RECORDS)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log.reopen().expect("reopen log"))
                .spawn()
                .expect("spawn dnsmasq");
            let mut server = Dnsmasq {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                log,
            };
            if server.wait_ready().await {
                return server;
            }
            last_log = server.log();
        }
        panic!("dnsmasq did not start; last log:\n{last_log}");
    }

    /// Polls until the server answers a known name; false if it exited or stayed silent.
    async fn wait_ready(&mut self) -> bool {
        let resolver = Resolver {
            server: self.addr,
            timeout: Duration::from_millis(100),
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(addrs) = resolver
                .addrs("crawl-66-249-66-1.googlebot.com", false)
                .await
            {
                assert_eq!(addrs, [ip("127.0.0.66")], "dnsmasq answered oddly");
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    fn log(&self) -> String {
        fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    fn queries_logged(&self) -> usize {
        self.log().matches("query[").count()
    }

    fn verifier(&self) -> GoodBotVerifier {
        let resolver = Resolver {
            server: self.addr,
            timeout: Duration::from_millis(500),
        };
        GoodBotVerifier::new(resolver, VerifierConfig::default())
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind probe socket");
    socket.local_addr().expect("probe address").port()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

#[tokio::test]
async fn resolver_reads_real_answers() {
    let dns = Dnsmasq::start().await;
    let resolver = Resolver::new(dns.addr);
    assert_eq!(
        resolver.ptr(ip("127.0.0.66")).await.unwrap(),
        ["crawl-66-249-66-1.googlebot.com"]
    );
    assert_eq!(
        resolver.ptr(ip("::1")).await.unwrap(),
        ["crawl-v6.googlebot.com"]
    );
    assert_eq!(
        resolver
            .addrs("crawl-v6.googlebot.com", true)
            .await
            .unwrap(),
        [ip("::1")]
    );
    // NXDOMAIN inside a local zone is an empty answer, not an error.
    assert!(resolver
        .addrs("crawl-fake.googlebot.com", false)
        .await
        .unwrap()
        .is_empty());
    // A zone the server does not serve: REFUSED, an error.
    let err = resolver.addrs("nothing.example", false).await.unwrap_err();
    assert!(err.to_string().contains("RCODE 5"), "{err}\n{}", dns.log());
}

#[tokio::test]
async fn verifies_real_crawlers_only() {
    let dns = Dnsmasq::start().await;
    let verifier = dns.verifier();
    let check = |addr: &'static str, ua: &'static str| {
        let verifier = verifier.clone();
        async move { verifier.verify(ip(addr), ua).await }
    };

    assert!(check("127.0.0.66", GOOGLEBOT_UA).await, "{}", dns.log());
    assert!(
        check("::1", GOOGLEBOT_UA).await,
        "IPv6 via AAAA\n{}",
        dns.log()
    );
    // Dual-stack listeners report IPv4 clients as mapped IPv6 addresses.
    assert!(check("::ffff:127.0.0.66", GOOGLEBOT_UA).await);
    assert!(check("127.0.0.70", BINGBOT_UA).await, "{}", dns.log());

    assert!(!check("127.0.0.67", GOOGLEBOT_UA).await, "PTR without A");
    assert!(
        !check("127.0.0.68", GOOGLEBOT_UA).await,
        "A points elsewhere"
    );
    assert!(
        !check("127.0.0.72", GOOGLEBOT_UA).await,
        "forward lookup refused"
    );
    assert!(!check("127.0.0.69", GOOGLEBOT_UA).await, "look-alike zone");
    assert!(
        !check("127.0.0.70", GOOGLEBOT_UA).await,
        "Bing's address claiming Google"
    );
    assert!(!check("127.0.0.99", GOOGLEBOT_UA).await, "no PTR at all");

    // Verdicts are cached: asking again costs no DNS query.
    let before = dns.queries_logged();
    assert_eq!(verifier.cached(ip("127.0.0.66"), GOOGLEBOT_UA), Some(true));
    assert_eq!(verifier.cached(ip("127.0.0.67"), GOOGLEBOT_UA), Some(false));
    assert!(check("127.0.0.66", GOOGLEBOT_UA).await);
    assert!(!check("127.0.0.69", GOOGLEBOT_UA).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(dns.queries_logged(), before);
}

#[tokio::test]
async fn no_claim_makes_no_lookup() {
    let dns = Dnsmasq::start().await;
    let verifier = dns.verifier();
    let before = dns.queries_logged();
    assert!(before > 0, "dnsmasq does not log queries:\n{}", dns.log());
    assert!(!verifier.verify(ip("127.0.0.66"), BROWSER_UA).await);
    assert!(!verifier.verify(ip("127.0.0.66"), "").await);
    assert!(
        !verifier.verify(ip("127.0.0.66"), "googlebot").await,
        "tokens are case-sensitive"
    );
    assert_eq!(verifier.stats().lookups, 0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(dns.queries_logged(), before, "{}", dns.log());
}

#[tokio::test]
async fn unreachable_server_means_not_verified() {
    let config = VerifierConfig {
        timeout: Duration::from_millis(600),
        ..VerifierConfig::default()
    };

    // A closed port: the kernel reports it unreachable, which must be a quick "no".
    let closed = {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.local_addr().expect("address")
    };
    let verifier = GoodBotVerifier::new(Resolver::new(closed), config.clone());
    let started = Instant::now();
    assert!(!verifier.verify(ip("127.0.0.66"), GOOGLEBOT_UA).await);
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );

    // A server that swallows queries: the verification's own timeout ends it.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let resolver = Resolver {
        server: silent.local_addr().expect("address"),
        timeout: Duration::from_secs(5),
    };
    let verifier = GoodBotVerifier::new(resolver, config);
    let started = Instant::now();
    assert!(!verifier.verify(ip("127.0.0.66"), GOOGLEBOT_UA).await);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(550) && elapsed < Duration::from_millis(1500),
        "{elapsed:?}"
    );
    assert_eq!(verifier.cached(ip("127.0.0.66"), GOOGLEBOT_UA), Some(false));
}

/// The host resolver (every outbound connection to a name) against the same server, set up as
/// on a host whose /etc/resolv.conf has a search domain but no nameserver: through the
/// configured fallback, on a port other than 53.
#[tokio::test]
async fn host_resolver_through_the_fallback() {
    let dns = Dnsmasq::start().await;
    let system = SystemDns::from_resolv_conf(
        std::path::Path::new("/etc/resolv.conf"),
        Ok(b"search googlebot.com\n".to_vec()),
        Some(dns.addr),
    );
    assert_eq!(system.source, DnsSource::Fallback);
    let resolver = HostResolver::new(&system).unwrap();
    let crawler = [ip("127.0.0.66")];
    let lookup = |name: &'static str| {
        let resolver = resolver.clone();
        async move { resolver.lookup(name).await }
    };
    assert_eq!(
        lookup("crawl-66-249-66-1.googlebot.com").await.unwrap(),
        crawler,
        "{}",
        dns.log()
    );
    // Fewer dots than `ndots` (1): the search domain completes the name.
    assert_eq!(lookup("crawl-66-249-66-1").await.unwrap(), crawler);
    // No A record: the AAAA one.
    assert_eq!(lookup("crawl-v6.googlebot.com").await.unwrap(), [ip("::1")]);
    let err = lookup("crawl-fake.googlebot.com").await.unwrap_err();
    assert!(matches!(err, HostError::NoAddress(_)), "{err}");
    // A zone the server refuses: an error, not "no such host" (fully qualified, or the search
    // domain would be tried after it and answer NXDOMAIN).
    let err = lookup("nothing.example.").await.unwrap_err();
    assert!(matches!(err, HostError::Lookup { .. }), "{err}");

    // hyper-util's connector resolves through it and connects to the URL's port.
    use tower_service::Service;
    let listener = tokio::net::TcpListener::bind("127.0.0.66:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut connector =
        hyper_util::client::legacy::connect::HttpConnector::new_with_resolver(resolver.clone());
    let uri: http::Uri = format!("http://crawl-66-249-66-1.googlebot.com:{port}/")
        .parse()
        .unwrap();
    let io = connector.call(uri).await.unwrap();
    assert_eq!(
        io.inner().peer_addr().unwrap(),
        SocketAddr::new(ip("127.0.0.66"), port)
    );
    // And so does `HostResolver::connect`.
    let s = resolver.connect("crawl-66-249-66-1", port).await.unwrap();
    assert_eq!(s.peer_addr().unwrap().ip(), ip("127.0.0.66"));
}
