//! `moat demo`: the point of Moat in ten seconds. A tiny sign-up site stands in for Ghost, Moat
//! guards it with the ghost preset, and a scripted list-validation attack from rotating loopback
//! addresses runs next to people signing up in a browser. Everything stays on 127.0.0.0/8.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Script requests per attack wave (three waves).
    #[arg(long, default_value_t = 100)]
    requests: usize,
    /// Browser sign-ups mixed into the attack.
    #[arg(long, default_value_t = 20)]
    people: usize,
}

const PAGE: &str = r#"<!doctype html><title>Demo blog</title><form id=f><input name=email type=email>
<button>Sign up</button></form><script>f.onsubmit=e=>{e.preventDefault();fetch('/members/api/send-magic-link/',
{method:'POST',headers:{'Content-Type':'application/json'},body:JSON.stringify({email:f.email.value,emailType:'signup'})})}</script>"#;

/// Counts what reached the site.
#[derive(Default)]
struct Site {
    magic_links: AtomicUsize,
    from_scripts: AtomicUsize,
    /// The sign-in links "mailed", by address (the demo's token is the address itself); a
    /// click on one gets the member session, as Ghost's does.
    mailed: std::sync::Mutex<std::collections::HashSet<String>>,
}

async fn site(listener: tokio::net::TcpListener, site: Arc<Site>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let site = site.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let site = site.clone();
                async move {
                    let is_magic = req.method() == http::Method::POST
                        && req.uri().path() == "/members/api/send-magic-link/";
                    let token = (req.uri().path() == "/members/")
                        .then(|| req.uri().query().unwrap_or("").strip_prefix("token="))
                        .flatten()
                        .map(str::to_string);
                    let scripted = req
                        .headers()
                        .get("x-demo-actor")
                        .is_some_and(|v| v == "script");
                    let body = req.into_body().collect().await.map(|b| b.to_bytes());
                    let resp = if let Some(t) = token {
                        let known = site.mailed.lock().is_ok_and(|mut m| m.remove(&t));
                        let mut r = Response::new(Full::new(Bytes::new()));
                        *r.status_mut() = StatusCode::FOUND;
                        r.headers_mut()
                            .insert("location", http::HeaderValue::from_static("/"));
                        if known {
                            r.headers_mut().insert(
                                "set-cookie",
                                http::HeaderValue::from_static("ghost-members-ssr=demo; Path=/"),
                            );
                        }
                        r
                    } else if is_magic {
                        let email = body
                            .ok()
                            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                            .and_then(|v| v["email"].as_str().map(str::to_string));
                        if let (Some(e), Ok(mut m)) = (email, site.mailed.lock()) {
                            m.insert(e);
                        }
                        site.magic_links.fetch_add(1, Ordering::Relaxed);
                        if scripted {
                            site.from_scripts.fetch_add(1, Ordering::Relaxed);
                        }
                        // Ghost's answer: 201, "Created.", no content type.
                        let mut r = Response::new(Full::new(Bytes::from_static(b"Created.")));
                        *r.status_mut() = StatusCode::CREATED;
                        r
                    } else {
                        let mut r = Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())));
                        r.headers_mut().insert(
                            "content-type",
                            "text/html; charset=utf-8".parse().expect("static"),
                        );
                        r
                    };
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

struct Outcome {
    status: u16,
    body: Bytes,
}

/// One POST from `from`, with the headers a given actor would send.
async fn send(
    moat: SocketAddr,
    from: IpAddr,
    headers: &[(&str, &str)],
    email: &str,
) -> Option<Outcome> {
    let mut c = HttpConnector::new();
    c.set_local_address(Some(from));
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(c);
    let body = format!(r#"{{"email":"{email}","emailType":"signup","honeypot":""}}"#);
    let mut b = Request::post(format!("http://{moat}/members/api/send-magic-link/"));
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    let req = b.body(Full::new(Bytes::from(body))).ok()?;
    let resp = client.request(req).await.ok()?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some(Outcome { status, body })
}

/// The person opens the sign-in mail and follows the link, from the same browser.
async fn click(moat: SocketAddr, from: IpAddr, headers: &[(&str, &str)], email: &str) {
    let mut c = HttpConnector::new();
    c.set_local_address(Some(from));
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(c);
    let mut b = Request::get(format!("http://{moat}/members/?token={email}"));
    for (n, v) in headers {
        if matches!(*n, "user-agent" | "accept-language" | "cookie") {
            b = b.header(*n, *v);
        }
    }
    if let Ok(req) = b.body(Full::new(Bytes::new())) {
        let _ = client.request(req).await;
    }
}

/// What the page script does in a person's browser: fetch a challenge, find the nonce, and
/// trade it for the clearance cookie. Returns the `Cookie` header value.
async fn browser_proof(moat: SocketAddr, from: IpAddr, ua: &str) -> Option<String> {
    let mut c = HttpConnector::new();
    c.set_local_address(Some(from));
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(c);
    let req = Request::get(format!("http://{moat}/.moat/challenge"))
        .header("user-agent", ua)
        .body(Full::new(Bytes::new()))
        .ok()?;
    let body = client
        .request(req)
        .await
        .ok()?
        .into_body()
        .collect()
        .await
        .ok()?;
    let (challenge, nonce) = solve(&body.to_bytes()).await?;
    let answer = serde_json::json!({ "challenge": challenge, "nonce": nonce }).to_string();
    let req = Request::post(format!("http://{moat}/.moat/verify"))
        .header("user-agent", ua)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(answer)))
        .ok()?;
    let resp = client.request(req).await.ok()?;
    let cookie = resp.headers().get("set-cookie")?.to_str().ok()?;
    Some(cookie.split(';').next()?.to_string())
}

/// What the page script does with a `403` asking for a proof of the send's own: solve the
/// challenge it carries. Returns the `Moat-Proof` value.
async fn action_proof(body: &[u8]) -> Option<String> {
    let (challenge, nonce) = solve(body).await?;
    Some(format!("{challenge}.{nonce}"))
}

/// Solves the challenge in a `{"challenge":…,"difficulty":N}` answer, as the page script's
/// workers do; returns the challenge and its nonce.
async fn solve(answer: &[u8]) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(answer).ok()?;
    let challenge = v["challenge"].as_str()?.to_string();
    let difficulty = u8::try_from(v["difficulty"].as_u64()?).ok()?;
    let c = challenge.clone();
    let nonce = tokio::task::spawn_blocking(move || {
        (0u64..)
            .map(|n| n.to_string())
            .find(|n| moat_proof::challenge::solves(&c, n, difficulty))
    })
    .await
    .ok()??;
    Some((challenge, nonce))
}

const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

fn browser_headers(host: &str) -> Vec<(&'static str, String)> {
    vec![
        ("user-agent", CHROME.into()),
        ("content-type", "application/json".into()),
        ("accept", "*/*".into()),
        ("accept-language", "en-GB,en;q=0.9".into()),
        ("origin", format!("http://{host}")),
        ("referer", format!("http://{host}/")),
        (
            "sec-ch-ua",
            r#""Chromium";v="131", "Not_A Brand";v="24""#.into(),
        ),
        ("sec-ch-ua-mobile", "?0".into()),
        ("sec-ch-ua-platform", "\"Linux\"".into()),
        ("sec-fetch-site", "same-origin".into()),
        ("sec-fetch-mode", "cors".into()),
        ("sec-fetch-dest", "empty".into()),
    ]
}

pub fn run(a: DemoArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(demo(a))
}

async fn demo(a: DemoArgs) -> anyhow::Result<ExitCode> {
    let state = std::env::temp_dir().join(format!("moat-demo-{}", std::process::id()));
    let upstream_l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let upstream = upstream_l.local_addr()?;
    let counts = Arc::new(Site::default());
    tokio::spawn(site(upstream_l, counts.clone()));

    let ov = moat_config::Overrides {
        listen: Some(vec!["127.0.0.1:0".into()]),
        upstream: Some(format!("http://{upstream}")),
        presets: vec!["ghost".into()],
        state_dir: Some(state.display().to_string()),
        ..Default::default()
    };
    let mut cfg = moat_config::load(None, &ov).map_err(|e| anyhow::anyhow!("{e}"))?;
    cfg.admin.listen = Some("127.0.0.1:0".parse()?);
    cfg.admin.token = Some("demo-token-not-for-production".into());
    let running = moat_http::app::start(cfg, Arc::new(moat_core::SystemClock)).await?;
    let moat = running.http_addrs[0];
    let host = moat.to_string();
    println!("Demo site (stands in for Ghost) on http://{upstream}, Moat with the ghost preset in front on http://{moat}\n");

    let waves: [(&str, Vec<(&str, String)>); 4] = [
        (
            "aiohttp script",
            vec![
                ("user-agent", "Python/3.12 aiohttp/3.9.5".into()),
                ("content-type", "application/json".into()),
            ],
        ),
        (
            "requests script",
            vec![
                ("user-agent", "python-requests/2.32.3".into()),
                ("content-type", "application/json".into()),
            ],
        ),
        (
            "script posing as Chrome",
            vec![
                ("user-agent", CHROME.into()),
                ("content-type", "application/json".into()),
                ("origin", format!("http://{host}")),
            ],
        ),
        // Every header a browser sends, but no browser behind it to earn the clearance.
        ("script copying a browser", browser_headers(&host)),
    ];
    let person = browser_headers(&host);
    let mut rows = Vec::new();
    let mut people_ok = 0;
    let mut person_no = 0;
    let mut genuine: Option<Outcome> = None;
    for (w, (name, headers)) in waves.iter().enumerate() {
        let before = counts.from_scripts.load(Ordering::Relaxed);
        let (mut decoyed, mut other) = (0, 0);
        for i in 0..a.requests {
            // A pool of 20 rotating addresses in two /24s, like a cheap proxy pool: each address
            // comes back, so repeat offenders get banned and then their whole /24.
            let from = IpAddr::V4(Ipv4Addr::new(
                127,
                66 + w as u8,
                (i % 20 / 10) as u8,
                (i % 10 + 1) as u8,
            ));
            let mut h: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            h.push(("x-demo-actor", "script"));
            let email = format!("victim{}-{i}@example.org", w);
            match send(moat, from, &h, &email).await {
                Some(o) if o.status == 201 && &o.body[..] == b"Created." => decoyed += 1,
                _ => other += 1,
            }
            // People keep signing up during the attack.
            let every = (waves.len() * a.requests / a.people.max(1)).max(1);
            if person_no < a.people && (w * a.requests + i).is_multiple_of(every) {
                let from = IpAddr::V4(Ipv4Addr::new(127, 10, person_no as u8, 1));
                let mut h: Vec<(&str, &str)> =
                    person.iter().map(|(n, v)| (*n, v.as_str())).collect();
                let cookie = browser_proof(moat, from, CHROME).await;
                if let Some(c) = &cookie {
                    h.push(("cookie", c.as_str()));
                }
                // The page script marks its writes, and solves a proof of the send's own when
                // the route is under pressure.
                h.push(("moat-page", "1"));
                let email = format!("reader{person_no}@example.net");
                let mut sent = send(moat, from, &h, &email).await;
                let proof = match &sent {
                    Some(o) if o.status == 403 => action_proof(&o.body).await,
                    _ => None,
                };
                if let Some(p) = &proof {
                    h.push(("moat-proof", p.as_str()));
                    sent = send(moat, from, &h, &email).await;
                }
                if let Some(o) = sent {
                    if o.status == 201 {
                        people_ok += 1;
                        // People click the link they asked for: that is what tells their
                        // network's sign-ups from a script's.
                        click(moat, from, &h, &email).await;
                    }
                    genuine.get_or_insert(o);
                }
                person_no += 1;
            }
        }
        let reached = counts.from_scripts.load(Ordering::Relaxed) - before;
        rows.push((*name, a.requests, reached, decoyed, other));
    }
    println!(
        "{:<26} {:>6} {:>16} {:>22}",
        "who", "sent", "reached the site", "got a fake \"Created.\""
    );
    for (name, sent, reached, decoyed, _) in &rows {
        println!("{name:<26} {sent:>6} {reached:>16} {decoyed:>22}");
    }
    let people_reached =
        counts.magic_links.load(Ordering::Relaxed) - counts.from_scripts.load(Ordering::Relaxed);
    println!(
        "{:<26} {:>6} {:>16} {:>22}",
        "people in a browser", person_no, people_reached, "-"
    );
    let bans = running.shield.engine.snapshot().ban_count();
    println!("\nAddresses and prefixes banned along the way: {bans}");
    if let Some(g) = genuine {
        println!("The site's own answer was {} {:?}; every script got exactly that, so the stolen list learned nothing.", g.status, String::from_utf8_lossy(&g.body));
    }
    println!("\nTry it yourself: moat run --listen 127.0.0.1:8080 --upstream http://127.0.0.1:2368 --preset ghost");
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(&state);
    let scripts_reached: usize = rows.iter().map(|r| r.2).sum();
    Ok(if scripts_reached == 0 && people_ok == person_no {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
