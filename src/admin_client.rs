//! Talking to the running instance's admin listener, for `moat reload` and `moat top`: its
//! address (written to the state directory at start, since the config may say port 0) and its
//! bearer token (in the state directory, or the config's).

use anyhow::Context;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::time::Duration;

/// The running instance's admin listener, as one config sees it.
pub struct Admin {
    pub addr: SocketAddr,
    token: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Admin {
    /// Reads the address and token for `cfg`; an error says what is missing and where.
    pub fn for_config(cfg: &moat_config::Config) -> anyhow::Result<Admin> {
        let addr = running_admin_addr(cfg)?;
        let token = existing_token(cfg)?;
        Ok(Admin {
            addr,
            token,
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        })
    }

    /// One request with the token; the status and body, or an error naming the address.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        timeout: Duration,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let addr = self.addr;
        let req = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .header("authorization", format!("Bearer {}", self.token))
            .body(Full::new(Bytes::new()))?;
        let resp = tokio::time::timeout(timeout, self.client.request(req))
            .await
            .with_context(|| format!("no answer within {} s", timeout.as_secs()))?
            .with_context(|| {
                format!("cannot reach the admin listener at {addr}: is Moat running?")
            })?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// The address the running instance's admin listener took: written to the state directory at
/// start (the config may say port 0), else the configured one.
fn running_admin_addr(cfg: &moat_config::Config) -> anyhow::Result<SocketAddr> {
    let file = cfg.server.state_dir.join(moat_web::ADMIN_ADDR_FILE);
    if let Ok(text) = std::fs::read_to_string(&file) {
        if let Ok(a) = text.trim().parse() {
            return Ok(a);
        }
    }
    match cfg.admin.listen {
        None => anyhow::bail!("admin.enabled = false: the admin listener is off"),
        Some(a) if a.port() == 0 => anyhow::bail!(
            "admin.listen has port 0 and {} does not exist: is Moat running with this state directory?",
            file.display()
        ),
        Some(a) => Ok(a),
    }
}

/// The admin token as the running instance has it. Unlike `moat_web::admin_token`, never
/// creates one: a client that made a token file would leave state behind where no Moat runs.
fn existing_token(cfg: &moat_config::Config) -> anyhow::Result<String> {
    if let Some(t) = &cfg.admin.token {
        return Ok(t.clone());
    }
    let path = moat_web::admin_token_path(cfg);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading the admin token {}: is Moat running with this state directory ({})?",
            path.display(),
            cfg.server.state_dir.display()
        )
    })?;
    Ok(text.trim().to_string())
}
