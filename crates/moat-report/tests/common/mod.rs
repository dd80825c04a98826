//! Fakes for the integration tests: an HTTP server that records requests and answers through a
//! handler, a minimal SMTP relay that records what it receives, RDAP answers shaped like the
//! registries', and a sample incident.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use moat_report::*;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A request the fake HTTP server received.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub headers: ::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
    pub fn form(&self) -> BTreeMap<String, String> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// Wait this long before answering (to exercise timeouts).
    pub delay: Option<Duration>,
}

impl Resp {
    pub fn json(status: u16, v: Value) -> Resp {
        Resp {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: serde_json::to_vec(&v).unwrap(),
            delay: None,
        }
    }
    pub fn with_header(mut self, k: &'static str, v: &str) -> Resp {
        self.headers.push((k, v.to_string()));
        self
    }
}

type Handler = Arc<dyn Fn(&Req, usize) -> Resp + Send + Sync>;

pub struct FakeHttp {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Req>>>,
}

impl FakeHttp {
    /// Serves on 127.0.0.1; `handler` gets each request and its index (0 for the first).
    pub async fn start(handler: impl Fn(&Req, usize) -> Resp + Send + Sync + 'static) -> FakeHttp {
        let handler: Handler = Arc::new(handler);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests: Arc<Mutex<Vec<Req>>> = Arc::default();
        let reqs = requests.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                let reqs = reqs.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let handler = handler.clone();
                        let reqs = reqs.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.unwrap().to_bytes().to_vec();
                            let r = Req {
                                method: parts.method.to_string(),
                                path: parts
                                    .uri
                                    .path_and_query()
                                    .map(|p| p.to_string())
                                    .unwrap_or_default(),
                                headers: parts.headers,
                                body,
                            };
                            let idx = {
                                let mut g = reqs.lock().unwrap();
                                g.push(r.clone());
                                g.len() - 1
                            };
                            let resp = handler(&r, idx);
                            if let Some(d) = resp.delay {
                                tokio::time::sleep(d).await;
                            }
                            let mut b = hyper::Response::builder().status(resp.status);
                            for (k, v) in resp.headers {
                                b = b.header(k, v);
                            }
                            Ok::<_, std::convert::Infallible>(
                                b.body(Full::new(Bytes::from(resp.body))).unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FakeHttp { addr, requests }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    pub fn requests(&self) -> Vec<Req> {
        self.requests.lock().unwrap().clone()
    }
}

/// A message the fake relay accepted.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub rcpt: Vec<String>,
    pub data: Vec<u8>,
}

/// How the fake relay answers the end of DATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataReply {
    Accept,
    Transient,
    Permanent,
}

pub struct FakeSmtp {
    pub addr: SocketAddr,
    pub mails: Arc<Mutex<Vec<Mail>>>,
    pub sessions: Arc<AtomicUsize>,
}

impl FakeSmtp {
    pub async fn start(reply: DataReply) -> FakeSmtp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
        let sessions = Arc::new(AtomicUsize::new(0));
        let (m, s) = (mails.clone(), sessions.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                s.fetch_add(1, Ordering::SeqCst);
                let m = m.clone();
                tokio::spawn(async move {
                    let _ = session(stream, reply, m).await;
                });
            }
        });
        FakeSmtp {
            addr,
            mails,
            sessions,
        }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

fn angle(arg: &str) -> String {
    let start = arg.find('<').map(|i| i + 1).unwrap_or(0);
    let end = arg[start..]
        .find('>')
        .map(|i| i + start)
        .unwrap_or(arg.len());
    arg[start..end].to_string()
}

async fn session(
    stream: tokio::net::TcpStream,
    reply: DataReply,
    mails: Arc<Mutex<Vec<Mail>>>,
) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 relay.test ESMTP fake\r\n").await?;
    let mut from = String::new();
    let mut rcpt = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        let upper = text.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            w.write_all(b"250-relay.test\r\n250-8BITMIME\r\n250 SIZE 10485760\r\n")
                .await?;
        } else if upper.starts_with("HELO") || upper.starts_with("RSET") || upper == "NOOP" {
            w.write_all(b"250 ok\r\n").await?;
        } else if upper.starts_with("MAIL FROM:") {
            from = angle(&text[10..]);
            rcpt.clear();
            w.write_all(b"250 2.1.0 ok\r\n").await?;
        } else if upper.starts_with("RCPT TO:") {
            rcpt.push(angle(&text[8..]));
            w.write_all(b"250 2.1.5 ok\r\n").await?;
        } else if upper == "DATA" {
            w.write_all(b"354 go ahead\r\n").await?;
            let mut data = Vec::new();
            loop {
                line.clear();
                if r.read_until(b'\n', &mut line).await? == 0 {
                    return Ok(());
                }
                if line == b".\r\n" {
                    break;
                }
                let l = if line.starts_with(b".") {
                    &line[1..]
                } else {
                    &line[..]
                };
                data.extend_from_slice(l);
            }
            match reply {
                DataReply::Accept => {
                    mails.lock().unwrap().push(Mail {
                        from: from.clone(),
                        rcpt: rcpt.clone(),
                        data,
                    });
                    w.write_all(b"250 2.0.0 queued as FAKE1\r\n").await?;
                }
                DataReply::Transient => w.write_all(b"451 4.3.0 try again later\r\n").await?,
                DataReply::Permanent => w.write_all(b"554 5.7.1 rejected\r\n").await?,
            }
        } else if upper == "QUIT" {
            w.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            w.write_all(b"502 5.5.2 not implemented\r\n").await?;
        }
    }
}

/// The bot's address in the tests (TEST-NET-3, reportable).
pub const BOT_IP: &str = "203.0.113.7";

/// A captured message with 8-bit content, a dot line and a MIME-ish line, to see it survive.
pub fn raw_message() -> Vec<u8> {
    b"Received: from bot (unknown [203.0.113.7])\r\n\
From: \"Shop\" <deals@victim-brand.example>\r\n\
To: alice@private.example\r\n\
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= cheap pills\r\n\
Message-ID: <spam-1@bot>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
Gr\xc3\xbc\xc3\x9fe! Buy now at https://spam.example/buy?x=1\r\n\
.\r\n\
--not-a-boundary\r\n\
end\r\n"
        .to_vec()
}

pub fn incident(id: &str) -> Incident {
    Incident {
        message_id: id.into(),
        received_ms: 1_704_110_400_000,
        source_ip: Some(BOT_IP.parse().unwrap()),
        helo: "WIN-BOT".into(),
        mail_from: "deals@victim-brand.example".into(),
        rcpt_to: vec!["alice@private.example".into(), "bob@private.example".into()],
        auth_user: Some("info".into()),
        urls: vec!["https://spam.example/buy?x=1".into()],
        domains: vec!["spam.example".into()],
        raw: raw_message(),
    }
}

fn vcard(name: &str, email: &str) -> Value {
    json!(["vcard", [
        ["version", {}, "text", "4.0"],
        ["fn", {}, "text", name],
        ["kind", {}, "text", "group"],
        ["email", {}, "text", email],
        ["tel", {"type": ["work", "voice"]}, "uri", "tel:+1-555-0100"]
    ]])
}

/// An ARIN-style network answer: the abuse contact nested in the registrant organisation.
pub fn rdap_ip_answer(abuse: &str) -> Value {
    json!({
        "rdapConformance": ["nro_rdap_profile_0", "rdap_level_0"],
        "objectClassName": "ip network",
        "handle": "NET-203-0-113-0-1",
        "startAddress": "203.0.113.0",
        "endAddress": "203.0.113.255",
        "ipVersion": "v4",
        "entities": [{
            "objectClassName": "entity",
            "handle": "EXHOST",
            "roles": ["registrant"],
            "vcardArray": ["vcard", [["version", {}, "text", "4.0"], ["fn", {}, "text", "Example Hosting"], ["kind", {}, "text", "org"]]],
            "entities": [
                {"objectClassName": "entity", "handle": "NOC-1", "roles": ["technical", "noc"],
                 "vcardArray": vcard("NOC", "noc@hosting.example")},
                {"objectClassName": "entity", "handle": "ABUSE-1", "roles": ["abuse"],
                 "vcardArray": vcard("Abuse Desk", abuse)}
            ]
        }]
    })
}

/// A registry-style domain answer: the registrar's abuse contact inside the registrar entity.
pub fn rdap_domain_answer(name: &str, abuse: &str) -> Value {
    json!({
        "rdapConformance": ["rdap_level_0", "icann_rdap_response_profile_0"],
        "objectClassName": "domain",
        "handle": "123_DOMAIN",
        "ldhName": name.to_uppercase(),
        "entities": [{
            "objectClassName": "entity",
            "handle": "9999",
            "roles": ["registrar"],
            "publicIds": [{"type": "IANA Registrar ID", "identifier": "9999"}],
            "vcardArray": ["vcard", [["version", {}, "text", "4.0"], ["fn", {}, "text", "Example Registrar"]]],
            "entities": [{
                "objectClassName": "entity",
                "roles": ["abuse"],
                "vcardArray": vcard("Registrar Abuse", abuse)
            }]
        }]
    })
}

/// A fake RDAP server answering for the bot's address and `spam.example`, and a bootstrap
/// folder that sends both there.
pub async fn fake_rdap(dir: &Path) -> FakeHttp {
    let rdap = FakeHttp::start(|req, _| {
        if req.header("accept") != Some("application/rdap+json") {
            return Resp::json(406, json!({"errorCode": 406}));
        }
        match req.path.as_str() {
            "/rdap/ip/203.0.113.7" => Resp::json(200, rdap_ip_answer("abuse@hosting.example")),
            "/rdap/domain/spam.example" => Resp::json(
                200,
                rdap_domain_answer("spam.example", "abuse@registrar.example"),
            ),
            _ => Resp::json(404, json!({"errorCode": 404, "title": "Not Found"})),
        }
    })
    .await;
    write_bootstrap(dir, &format!("{}/rdap/", rdap.url()));
    rdap
}

pub fn write_bootstrap(dir: &Path, base: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("ipv4.json"),
        json!({"description": "test", "publication": "2024-01-01T00:00:00Z", "version": "1.0",
               "services": [[["203.0.113.0/24", "198.51.100.0/24"], [base]]]})
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join("dns.json"),
        json!({"description": "test", "publication": "2024-01-01T00:00:00Z", "version": "1.0",
               "services": [[["example"], [base]]]})
        .to_string(),
    )
    .unwrap();
}

/// A config with every target pointed at local fakes, sending on.
pub fn live_config(dir: &Path, http: &FakeHttp, smtp: Option<&FakeSmtp>) -> ReportConfig {
    ReportConfig {
        send: true,
        outbox: dir.join("outbox"),
        timeout_secs: 5,
        reporter: ReporterIdentity {
            org: "Moat Test".into(),
            email: "abuse-reports@trap.example".into(),
            domain: Some("trap.example".into()),
            reporting_mta: "trap.example".into(),
            user_agent: "Moat/test".into(),
        },
        retry: RetryConfig {
            max_attempts: 3,
            base_secs: 60,
            max_secs: 600,
        },
        rdap: RdapConfig {
            bootstrap_dir: Some(dir.join("bootstrap")),
            ..Default::default()
        },
        arf: smtp.map(|s| ArfConfig {
            from: "abuse-reports@trap.example".into(),
            smtp: SmtpConfig {
                host: "127.0.0.1".into(),
                port: s.addr.port(),
                tls: SmtpTls::None,
                ..Default::default()
            },
            ..Default::default()
        }),
        xarf: Some(XarfConfig {
            url: Some(format!("{}/xarf", http.url())),
            ..Default::default()
        }),
        abuseipdb: Some(AbuseIpdbConfig {
            key: "test-key-123".into(),
            base_url: http.url(),
            ..Default::default()
        }),
        spamhaus: Some(SpamhausConfig {
            token: "sh-token".into(),
            base_url: format!("{}/portal", http.url()),
            ..Default::default()
        }),
        webhook: Some(WebhookConfig {
            url: format!("{}/hook", http.url()),
            headers: [("x-moat-secret".to_string(), "s3cret".to_string())].into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// [`live_config`] with ARF the only target.
pub fn arf_only_config(dir: &Path, http: &FakeHttp, smtp: &FakeSmtp) -> ReportConfig {
    ReportConfig {
        xarf: None,
        abuseipdb: None,
        spamhaus: None,
        webhook: None,
        ..live_config(dir, http, Some(smtp))
    }
}

pub fn by_target(records: &[Record], t: Target) -> Vec<Record> {
    records.iter().filter(|r| r.target == t).cloned().collect()
}
