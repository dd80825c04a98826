//! `moat reload`: asks the running instance to re-read its config, as SIGHUP does, and prints
//! what happened. The config is checked here first, so errors are shown with file and line
//! before anything is asked of the running process.

use crate::cmd_run::{load_or_report, overrides};
use crate::ConfigArgs;
use anyhow::Context;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::process::ExitCode;

pub fn run(c: &ConfigArgs) -> anyhow::Result<ExitCode> {
    // Read here for the state directory and the admin token, and to show errors with file and
    // line; the running instance reloads with its own flags (an upstream given as `--upstream`
    // to `moat run` is not in the file, hence the stand-in).
    let mut ov = overrides(c);
    ov.upstream = Some("http://127.0.0.1:1".into());
    let Some(cfg) = load_or_report(c, ov) else {
        eprintln!("not reloaded: the running instance keeps its config");
        return Ok(ExitCode::from(1));
    };
    let token = moat_http::app::admin_token(&cfg).context("reading the admin token")?;
    let addr = running_admin_addr(&cfg)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, body) = rt.block_on(async {
        let client: Client<_, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        let req = Request::post(format!("http://{addr}/api/reload"))
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))?;
        let resp = tokio::time::timeout(std::time::Duration::from_secs(30), client.request(req))
            .await
            .context("no answer within 30 s")?
            .with_context(|| {
                format!("cannot reach the admin listener at {addr}: is Moat running?")
            })?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    })?;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if status.is_success() {
        println!(
            "reloaded: {} rules, {} rate limits",
            v["rules"], v["rate_limits"]
        );
        if let Some(list) = v["need_restart"].as_array().filter(|l| !l.is_empty()) {
            let names: Vec<&str> = list.iter().filter_map(|n| n.as_str()).collect();
            println!(
                "changed, and applied only after a restart: {}",
                names.join(", ")
            );
        }
        Ok(ExitCode::SUCCESS)
    } else {
        let why = v["error"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
        eprintln!("not reloaded ({status}): {why}");
        Ok(ExitCode::from(1))
    }
}

/// The address the running instance's admin listener took: written to the state directory at
/// start (the config may say port 0), else the configured one.
fn running_admin_addr(cfg: &moat_config::Config) -> anyhow::Result<SocketAddr> {
    let file = cfg.server.state_dir.join(moat_http::app::ADMIN_ADDR_FILE);
    if let Ok(text) = std::fs::read_to_string(&file) {
        if let Ok(a) = text.trim().parse() {
            return Ok(a);
        }
    }
    match cfg.admin.listen {
        None => anyhow::bail!("admin.enabled = false: send the process SIGHUP instead"),
        Some(a) if a.port() == 0 => anyhow::bail!(
            "admin.listen has port 0 and {} does not exist: is Moat running with this state directory?",
            file.display()
        ),
        Some(a) => Ok(a),
    }
}
