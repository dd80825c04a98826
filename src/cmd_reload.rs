//! `moat reload`: asks the running instance to re-read its config, as SIGHUP does, and prints
//! what happened. The config is checked here first, so errors are shown with file and line
//! before anything is asked of the running process.

use crate::admin_client::Admin;
use crate::cmd_run::{load_or_report, overrides};
use crate::ConfigArgs;
use http::Method;
use std::process::ExitCode;
use std::time::Duration;

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
    let admin = match Admin::for_config(&cfg) {
        Err(e) if cfg.admin.listen.is_none() => {
            return Err(e.context("send the process SIGHUP instead"))
        }
        r => r?,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, body) =
        rt.block_on(admin.call(Method::POST, "/api/reload", Duration::from_secs(30)))?;
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
