//! `moat asn refresh`: a newer IP-to-ASN table than the one shipped in the binary, written to
//! the state directory, where the running instance picks it up at its next look (the Who page,
//! `/api/top`) with no restart. From iptoasn.com by default (public domain, refreshed hourly
//! upstream), or any URL or file holding iptoasn's TSV or ip-location-db's CSV, gzipped or not.

use crate::ConfigArgs;
use anyhow::{bail, Context};
use clap::Subcommand;
use moat_core::AsnTable;
use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

/// iptoasn's combined IPv4 and IPv6 table.
pub const DEFAULT_URL: &str = "https://iptoasn.com/data/ip2asn-combined.tsv.gz";
/// The most a download may be (the real table is about 8 MB gzipped).
const MAX_DOWNLOAD: usize = 128 * 1024 * 1024;
/// The most a table may inflate to (the real one is about 35 MB).
const MAX_TEXT: u64 = 1024 * 1024 * 1024;

#[derive(Subcommand)]
pub enum AsnCmd {
    /// Fetch a newer table and keep it in the state directory (state_dir/asn-table.bin).
    Refresh {
        /// Where from: an http(s) URL or a file; iptoasn's TSV or ip-location-db's CSV,
        /// gzipped or not. Repeatable (ip-location-db has one file per family).
        #[arg(long = "from", default_value = DEFAULT_URL)]
        from: Vec<String>,
        /// Keep a table much smaller than the one in use (less than half its ranges), which
        /// is otherwise refused as a download cut short.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// Which table is in use and how many ranges it has; with an address, its AS.
    Show {
        address: Option<std::net::IpAddr>,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
}

pub fn run(cmd: AsnCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        AsnCmd::Refresh { from, force, cfg } => refresh(&from, force, &cfg),
        AsnCmd::Show { address, cfg } => {
            let cfg = crate::cmd_feeds::config(&cfg)?;
            let source = moat_web::asn::AsnSource::new(&cfg.server.state_dir);
            let t = source.current(cfg.cohorts.asn_table.as_ref());
            println!("{} ranges, from {}", t.table.len(), t.source);
            if let Some(ip) = address {
                match t.table.lookup(ip) {
                    Some(a) => println!("{ip}: AS{a} {}", t.table.name(a).unwrap_or("")),
                    None => println!("{ip}: no AS announces it in this table"),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn refresh(from: &[String], force: bool, cfg: &ConfigArgs) -> anyhow::Result<ExitCode> {
    let cfg = crate::cmd_feeds::config(cfg)?;
    let mut text = String::new();
    for src in from {
        let bytes = if src.starts_with("http://") || src.starts_with("https://") {
            download(src)?
        } else {
            std::fs::read(src).with_context(|| format!("reading {src}"))?
        };
        let t = inflate(&bytes).with_context(|| format!("reading {src}"))?;
        text.push_str(&t);
        if !text.ends_with('\n') {
            text.push('\n');
        }
    }
    let (table, dropped) =
        AsnTable::parse_with(&text, false).map_err(|e| anyhow::anyhow!("{e} (of {from:?})"))?;
    let in_use = moat_web::asn::AsnSource::new(&cfg.server.state_dir).current(None);
    if table.len() * 2 < in_use.table.len() && !force {
        bail!(
            "the new table has {} ranges, less than half of the {} in use ({}): a download cut \
             short? Nothing was changed; --force keeps it anyway",
            table.len(),
            in_use.table.len(),
            in_use.source
        );
    }
    let path = cfg.server.state_dir.join(moat_web::asn::STATE_FILE);
    // Renamed over after an fsync: a running Moat reading it at that moment sees the old table
    // or the new, never half of one.
    std::fs::create_dir_all(&cfg.server.state_dir)
        .with_context(|| format!("{}", cfg.server.state_dir.display()))?;
    moat_http::state_file::write_atomic(&path, &table.to_pack(), 0o644)
        .with_context(|| format!("{}", path.display()))?;
    println!(
        "{}: {} ranges ({dropped} overlapping dropped); the running instance uses it from its \
         next look",
        path.display(),
        table.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn download(url: &str) -> anyhow::Result<Vec<u8>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        // The operator named this URL: it may be on a private network.
        let client = moat_report::http::HttpClient::new(
            Duration::from_secs(120),
            MAX_DOWNLOAD,
            concat!("Moat/", env!("CARGO_PKG_VERSION"), " asn"),
            moat_report::http::Reach::naming([url], []),
        )?;
        let a = client
            .send(http::Method::GET, url, &[], None)
            .await
            .with_context(|| format!("fetching {url}"))?;
        if a.status != 200 {
            bail!("{url} answered {}", a.status);
        }
        Ok(a.body.to_vec())
    })
}

/// The text of a table, gunzipped when it is gzip (a gzip cut short fails its check here).
fn inflate(bytes: &[u8]) -> anyhow::Result<String> {
    let raw = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .take(MAX_TEXT)
            .read_to_end(&mut out)
            .context("the gzip does not inflate")?;
        out
    } else {
        bytes.to_vec()
    };
    String::from_utf8(raw).context("the table is not UTF-8 text")
}
