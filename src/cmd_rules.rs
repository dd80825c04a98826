//! `moat rules test`: evaluate the policy against one request and say which rule matched and
//! why, without running anything.

use crate::ConfigArgs;
use anyhow::{bail, Context};
use http::{HeaderMap, HeaderName, HeaderValue};
use moat_config::Action;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum RulesCmd {
    /// Evaluate rules against a request given as a raw HTTP file or on the command line.
    Test(TestArgs),
}

#[derive(clap::Args)]
pub struct TestArgs {
    /// A raw HTTP/1.1 request (request line, headers, blank line, body); `-` for stdin.
    #[arg(long)]
    request: Option<PathBuf>,
    /// Method, when the request is given on the command line.
    #[arg(long, short = 'X', default_value = "GET")]
    method: String,
    /// Path and query (or a full URL) when given on the command line.
    #[arg(long, default_value = "/")]
    url: String,
    /// A header, `Name: value` (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// The request body.
    #[arg(long, short = 'd')]
    data: Option<String>,
    /// The client address.
    #[arg(long, default_value = "203.0.113.7")]
    ip: IpAddr,
    /// Treat the connection as TLS.
    #[arg(long)]
    tls: bool,
    /// Treat the client as banned.
    #[arg(long)]
    banned: bool,
    /// Treat the request as carrying a valid clearance cookie (the browser proof passed).
    #[arg(long)]
    clearance: bool,
    /// Treat the client as a crawler verified by reverse DNS.
    #[arg(long)]
    good_bot: bool,
    /// The standing of the client's cohort with the `[[confirm]]` routes: its clicks on the
    /// links the app mailed (`moat.cohort`).
    #[arg(long, default_value = "unknown", value_parser = ["confirmed", "unknown", "silent"])]
    cohort: String,
    #[command(flatten)]
    cfg: ConfigArgs,
}

struct Parsed {
    method: String,
    target: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

fn parse_raw(text: &[u8]) -> anyhow::Result<Parsed> {
    let split = text
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| text.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let (head, body) = match split {
        Some((i, n)) => (&text[..i], text[i + n..].to_vec()),
        None => (text, Vec::new()),
    };
    let head = std::str::from_utf8(head).context("the request head is not UTF-8")?;
    let mut lines = head.lines();
    let first = lines.next().unwrap_or("");
    let mut parts = first.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        bail!("the first line must be `METHOD /path HTTP/1.1`, got `{first}`");
    };
    let mut headers = HeaderMap::new();
    for l in lines {
        add_header(&mut headers, l)?;
    }
    Ok(Parsed {
        method: method.into(),
        target: target.into(),
        headers,
        body,
    })
}

fn add_header(h: &mut HeaderMap, line: &str) -> anyhow::Result<()> {
    let (n, v) = line
        .split_once(':')
        .with_context(|| format!("header `{line}` has no colon"))?;
    h.append(
        HeaderName::from_bytes(n.trim().as_bytes())?,
        HeaderValue::from_str(v.trim())?,
    );
    Ok(())
}

pub fn run(cmd: RulesCmd) -> anyhow::Result<ExitCode> {
    let RulesCmd::Test(a) = cmd;
    let mut ov = crate::cmd_run::overrides(&a.cfg);
    ov.upstream
        .get_or_insert_with(|| "http://127.0.0.1:1".into());
    let Some(cfg) = crate::cmd_run::load_or_report(&a.cfg, ov) else {
        return Ok(ExitCode::from(1));
    };
    let p = match &a.request {
        Some(path) => {
            let raw = if path.as_os_str() == "-" {
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut v)?;
                v
            } else {
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
            };
            parse_raw(&raw)?
        }
        None => {
            let mut headers = HeaderMap::new();
            for h in &a.headers {
                add_header(&mut headers, h)?;
            }
            Parsed {
                method: a.method.clone(),
                target: a.url.clone(),
                headers,
                body: a.data.clone().unwrap_or_default().into_bytes(),
            }
        }
    };
    let uri: http::Uri = p
        .target
        .parse()
        .with_context(|| format!("`{}` is not a valid request target", p.target))?;
    let host = p
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let ct = p
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let json = moat_http::request_view::parse_body(&ct, &p.body);
    let pq = uri.path_and_query().map_or("/", |x| x.as_str()).to_string();
    let path = moat_http::request_view::normalize_path(uri.path());
    let secure = moat_http::request_view::secure_context(a.tls, &host);
    let shape = moat_proof::fingerprint::shape(false, &p.method, &p.headers, secure);
    let fixed = moat_rules::FixedShape {
        text: shape.text,
        consistent: shape.consistent,
    };
    let cohorts = moat_detect::Cohorts::new(cfg.cohorts.clone());
    let header = |n: http::header::HeaderName| p.headers.get(n).map_or(&b""[..], |v| v.as_bytes());
    let cohort = TestCohort {
        standing: match a.cohort.as_str() {
            "confirmed" => "confirmed",
            "silent" => "silent",
            _ => "unknown",
        },
        key: cohorts.key(
            a.ip,
            header(http::header::USER_AGENT),
            header(http::header::ACCEPT_LANGUAGE),
        ),
    };
    let http_method = http::Method::from_bytes(p.method.as_bytes())
        .with_context(|| format!("`{}` is not an HTTP method", p.method))?;
    let req = moat_rules::Request {
        method: &p.method,
        uri: &pq,
        path: &path,
        query: uri.query().unwrap_or(""),
        host: &host,
        headers: &p.headers,
        ip: a.ip,
        prefix_lens: cfg.server.prefix_lens,
        json: json.as_ref(),
        ssl: a.tls,
        secure_context: secure,
        banned: a.banned,
        proof: moat_rules::ProofFields {
            clearance: a.clearance,
            good_bot: a.good_bot,
            shape: &fixed,
            cohort: &cohort,
        },
    };
    println!("fingerprint {}", fixed.text);
    if !cfg.policy.confirms.is_empty() {
        let network = match cfg.cohorts.asn_table.as_ref().and_then(|t| t.lookup(a.ip)) {
            Some(asn) => format!("AS{asn}"),
            None => moat_core::prefix_of(
                a.ip,
                moat_core::PrefixLens {
                    v4: cfg.cohorts.prefix_v4,
                    v6: cfg.cohorts.prefix_v6,
                },
            )
            .to_string(),
        };
        println!(
            "cohort {} (network {network}, this user agent and Accept-Language; --cohort sets the standing)",
            cohort.standing
        );
        for c in &cfg.policy.confirms {
            if c.send.matches(&req) {
                println!(
                    "confirm {}: a send, counted for the cohort if the app accepts it",
                    c.id
                );
            } else if c.click.matches(&req) {
                println!(
                    "confirm {}: a click, raising the cohort's standing if the app accepts it",
                    c.id
                );
            }
        }
    }
    let mut decided = None;
    for r in &cfg.policy.rules {
        let asks_proof = r.require_clearance || matches!(r.action, Action::Challenge { .. });
        let passes = if a.good_bot {
            Some("a verified good bot")
        } else if a.clearance {
            Some("has clearance")
        } else if cfg.proof.exempt(&http_method, &path) {
            Some("path never challenged")
        } else {
            None
        };
        if let (true, Some(why)) = (asks_proof, passes) {
            println!("      {} ({}, passed over: {why})", r.id, r.origin);
            if let Some(k) = &r.per_action {
                println!(
                    "        unless its route is under pressure: then each request needs a proof of its own, bound to its {}",
                    k.spelling()
                );
            }
            continue;
        }
        let m = r.expr.matches(&req);
        println!(
            "{} {} ({}, action {})",
            if m { "MATCH" } else { "     " },
            r.id,
            r.origin,
            r.action.name()
        );
        if m {
            for why in r.expr.explain(&req) {
                println!("        {why}");
            }
            if decided.is_none() && r.action.is_terminal() {
                decided = Some((r.id.clone(), r.action.clone()));
            }
        }
    }
    for l in &cfg.policy.rate_limits {
        let applies = l.expr.as_ref().is_none_or(|e| e.matches(&req));
        let key = moat_detect::limit_key::limit_key(&l.key, &req);
        println!(
            "limit {} {}: {}",
            l.id,
            if applies { "applies" } else { "does not apply" },
            key.map_or("no key in this request".into(), |k| format!(
                "key `{}`, {} per {:?} (burst {}), then {}",
                String::from_utf8_lossy(&k),
                l.requests,
                l.period,
                l.burst,
                l.action.name()
            ))
        );
    }
    match decided {
        Some((id, action)) => {
            let what = match &action {
                Action::Decoy(i) => format!("decoy `{}`", cfg.policy.decoys[*i].id),
                other => other.name().to_string(),
            };
            println!("=> rule `{id}` decides: {what}");
        }
        None if a.banned => println!("=> banned: ban response ({})", cfg.bans.status),
        None => println!("=> no rule stops it: rate limits apply, then it is forwarded"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The cohort as `--cohort` says it stands.
struct TestCohort {
    standing: &'static str,
    key: u64,
}

impl moat_rules::CohortSource for TestCohort {
    fn standing(&self) -> &str {
        self.standing
    }
    fn key(&self) -> Option<u64> {
        Some(self.key)
    }
}
