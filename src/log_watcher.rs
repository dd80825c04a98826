//! The log watcher at run time: builds the jails (fail2ban's, read in place, and Moat's own
//! from `[[logs.jail]]`), follows their logs (files, the journal), and hands every jail ban to
//! the engine's decider, where the allowlist, escalation and the other shields apply to it as
//! to any ban. Log positions are saved every second, after the lines were acted on, so a
//! restart neither re-reads nor skips a line.

use anyhow::{bail, Context};
use ipnet::IpNet;
use jiff::tz::TimeZone;
use moat_config::model::{LogFilter, Logs};
use moat_core::{EventKind, Scope, Sensor, Subject};
use moat_detect::jail::{Jail, JailBan, JailConfig};
use moat_engine::{Engine, GuardVerdict};
use moat_logs::fail2ban::{self, ini::Options, jails::Logs as F2bLogs, Filter, FilterDef, Outcome};
use moat_logs::source::{
    spawn_journal, Checkpoints, FileTail, FileWatch, JournalConfig, Line, StartAt, TailConfig,
    DEFAULT_POLL_INTERVAL,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where one jail reads.
#[derive(Debug, Clone)]
pub enum Reads {
    Files(Vec<PathBuf>),
    Journal(Vec<String>),
}

/// A jail ready to run, and what to say about it at start.
pub struct Built {
    pub jail: Jail,
    /// Its filter, and the definition it was compiled from (jails on one log with equal
    /// definitions share one matcher). Shared by every jail with an equal definition: 100
    /// jails each holding its own copy until all are built left 0.5 MB resident.
    pub filter: Filter,
    pub def: Arc<FilterDef>,
    pub reads: Reads,
    pub notes: Vec<String>,
}

/// Filters compiled so far: an equal definition gets the first one's definition and a copy
/// of its filter sharing the compiled regexes.
#[derive(Default)]
struct Compiled(Vec<(Arc<FilterDef>, Filter)>);

impl Compiled {
    fn get(
        &mut self,
        def: FilterDef,
        tz: &TimeZone,
        jail: &str,
    ) -> anyhow::Result<(Arc<FilterDef>, Filter)> {
        if let Some((d, f)) = self.0.iter().find(|(d, _)| same_filter(d, &def)) {
            return Ok((Arc::clone(d), f.fresh()));
        }
        let f =
            Filter::compile(&def, tz.clone()).map_err(|e| anyhow::anyhow!("jail {jail}: {e}"))?;
        let def = Arc::new(def);
        self.0.push((Arc::clone(&def), f.fresh()));
        Ok((def, f))
    }
}

/// Whether two definitions match the same way (where they were read from does not matter).
fn same_filter(a: &FilterDef, b: &FilterDef) -> bool {
    (
        &a.prefregex,
        &a.failregex,
        &a.ignoreregex,
        &a.datepattern,
        a.maxlines,
    ) == (
        &b.prefregex,
        &b.failregex,
        &b.ignoreregex,
        &b.datepattern,
        b.maxlines,
    )
}

/// Every jail of `cfg`, with its filter read and compiled: errors name the filter file.
pub fn build(cfg: &Logs) -> anyhow::Result<Vec<Built>> {
    let tz = match &cfg.timezone {
        Some(z) => TimeZone::get(z).with_context(|| format!("logs.timezone `{z}`"))?,
        None => TimeZone::system(),
    };
    let logtype = |journal: bool| -> Options {
        let t = if journal { "journal" } else { "file" };
        [("logtype".to_string(), t.to_string())].into()
    };
    let mut built = Vec::new();
    let mut compiled = Compiled::default();
    if let Some(root) = &cfg.fail2ban {
        let jails = fail2ban::jails::read_jails(root)
            .with_context(|| format!("reading fail2ban's jails in {}", root.display()))?;
        for j in jails {
            let journal = matches!(j.logs, F2bLogs::Journal);
            let def = fail2ban::load(&root.join("filter.d"), &j.filter, &logtype(journal))
                .with_context(|| format!("jail {}", j.config.name))?;
            // From this jail's own definition: equal ones may differ in journalmatch.
            let reads = match j.logs {
                F2bLogs::Files(p) => Reads::Files(p),
                F2bLogs::Journal => Reads::Journal(def.journalmatch.clone()),
            };
            let (def, filter) = compiled.get(def, &tz, &j.config.name)?;
            built.push(Built {
                jail: Jail::new(j.config),
                filter,
                def,
                reads,
                notes: j.notes,
            });
        }
    }
    for j in &cfg.jails {
        let journal = j.journal.is_some();
        let def = match &j.filter {
            LogFilter::Named(spec) => {
                let spec = fail2ban::FilterSpec::parse(spec)?;
                fail2ban::load(&cfg.filter_dir, &spec, &logtype(journal))
                    .with_context(|| format!("logs.jail {}", j.name))?
            }
            LogFilter::Inline {
                failregex,
                ignoreregex,
                prefregex,
                datepattern,
            } => FilterDef {
                path: PathBuf::from(format!("[[logs.jail]] {}", j.name)),
                prefregex: prefregex.clone(),
                failregex: failregex.clone(),
                ignoreregex: ignoreregex.clone(),
                datepattern: datepattern.clone(),
                maxlines: 1,
                journalmatch: j.journal.clone().unwrap_or_default(),
            },
        };
        let reads = match &j.journal {
            Some(m) if !m.is_empty() => Reads::Journal(m.clone()),
            Some(_) => Reads::Journal(def.journalmatch.clone()),
            None => Reads::Files(j.logpath.iter().map(PathBuf::from).collect()),
        };
        let (def, filter) = compiled.get(def, &tz, &j.name)?;
        let mut config = JailConfig::new(&j.name);
        config.max_retry = j.max_retry;
        config.find_time = j.find_time;
        config.ban_time = j.ban_time;
        config.ignore = j.ignore.clone();
        built.push(Built {
            jail: Jail::new(config),
            filter,
            def,
            reads,
            notes: Vec::new(),
        });
    }
    let mut names = std::collections::HashSet::new();
    for b in &built {
        if !names.insert(b.jail.config.name.clone()) {
            bail!("two jails are named `{}`", b.jail.config.name);
        }
    }
    Ok(built)
}

/// The running watcher.
pub struct LogWatcher {
    files: Option<FileWatch>,
    journals: Vec<tokio::task::JoinHandle<()>>,
    consumer: tokio::task::JoinHandle<Checkpoints>,
    stop: tokio::sync::watch::Sender<bool>,
}

/// One log's readers: per filter definition, one matcher and the jails that count its
/// outcomes.
struct Group {
    def: Arc<FilterDef>,
    filter: Filter,
    jails: Vec<usize>,
}

type Routes = HashMap<Arc<str>, Vec<Group>>;

/// Jail `i` (built as `b`) reads log `name`.
fn route(routes: &mut Routes, name: Arc<str>, b: &Built, i: usize) {
    let groups = routes.entry(name).or_default();
    match groups.iter_mut().find(|g| same_filter(&g.def, &b.def)) {
        Some(g) => g.jails.push(i),
        None => groups.push(Group {
            def: b.def.clone(),
            filter: b.filter.fresh(),
            jails: vec![i],
        }),
    }
}

/// Starts following every jail's logs; bans go to `engine`.
pub fn start(cfg: &Logs, engine: Arc<Engine>) -> anyhow::Result<LogWatcher> {
    let built = build(cfg)?;
    let mut checkpoints = Checkpoints::load(&cfg.checkpoints)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Line>(1024);
    let mut routes: Routes = HashMap::new();
    let mut tails: Vec<FileTail> = Vec::new();
    let mut journals = Vec::new();
    let mut jails = Vec::new();
    let tail_cfg = TailConfig {
        start: if cfg.from_beginning {
            StartAt::Beginning
        } else {
            StartAt::End
        },
        ..TailConfig::default()
    };
    for (i, b) in built.into_iter().enumerate() {
        for note in &b.notes {
            tracing::warn!(jail = %b.jail.config.name, "{note}");
        }
        match &b.reads {
            Reads::Files(paths) => {
                for p in paths {
                    let name: Arc<str> = Arc::from(p.to_string_lossy());
                    if !tails.iter().any(|t| *t.name() == name) {
                        let resume = checkpoints.file(&name);
                        let tail = FileTail::new(p, tail_cfg.clone(), resume)?;
                        // A file first seen now: remember where reading starts, so that a
                        // restart before its first line does not start at the end again.
                        if resume.is_none() {
                            if let Some(pos) = tail.position() {
                                checkpoints.set(&name, &pos);
                            }
                        }
                        tails.push(tail);
                    }
                    route(&mut routes, name, &b, i);
                }
            }
            Reads::Journal(matches) => {
                let name: Arc<str> = Arc::from(format!("journal:{}", b.jail.config.name));
                let mut jc = JournalConfig::new(name.clone());
                jc.matches = matches
                    .iter()
                    .flat_map(|m| m.split_whitespace())
                    .map(str::to_string)
                    .collect();
                let cursor = checkpoints.journal_cursor(&name).map(str::to_string);
                journals.push(spawn_journal(jc, cursor, tx.clone())?);
                route(&mut routes, name, &b, i);
            }
        }
        tracing::info!(jail = %b.jail.config.name, reads = ?b.reads, maxretry = b.jail.config.max_retry,
            findtime_secs = b.jail.config.find_time.as_secs(), bantime_secs = b.jail.config.ban_time.as_secs(),
            "log watcher jail");
        jails.push(b.jail);
    }
    checkpoints.save()?;
    let files = match tails.is_empty() {
        true => None,
        false => Some(FileWatch::spawn(tails, tx, DEFAULT_POLL_INTERVAL)?),
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let consumer = tokio::spawn(consume(rx, jails, routes, checkpoints, engine, stopped));
    Ok(LogWatcher {
        files,
        journals,
        consumer,
        stop,
    })
}

impl LogWatcher {
    /// Stops reading, and saves where every log was left.
    pub async fn shutdown(self) {
        if let Some(f) = self.files {
            tokio::task::spawn_blocking(move || drop(f.stop()))
                .await
                .ok();
        }
        for j in &self.journals {
            j.abort();
        }
        let _ = self.stop.send(true);
        if let Ok(mut c) = self.consumer.await {
            if let Err(e) = c.save() {
                tracing::error!(error = %e, "log positions not saved");
            }
        }
    }
}

async fn consume(
    mut rx: tokio::sync::mpsc::Receiver<Line>,
    mut jails: Vec<Jail>,
    mut routes: Routes,
    mut checkpoints: Checkpoints,
    engine: Arc<Engine>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> Checkpoints {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            line = rx.recv() => {
                let Some(line) = line else { break };
                let now = jiff::Timestamp::now();
                for g in routes.get_mut(&line.source).map(Vec::as_mut_slice).unwrap_or(&mut []) {
                    let outcome = match line.time {
                        Some(t) => g.filter.process_dated(&line.text, t, now),
                        None => g.filter.process_line(&line.text, now),
                    };
                    let outcome = not_banned(outcome, &engine);
                    for &i in &g.jails {
                        if let Some(b) = jails[i].count(outcome.failed(), now) {
                            ban_now(&engine, b);
                        }
                    }
                }
                checkpoints.ack(&line);
            }
            _ = tick.tick() => {
                if checkpoints.is_dirty() {
                    if let Err(e) = checkpoints.save() {
                        tracing::error!(error = %e, "log positions not saved");
                    }
                }
            }
            _ = stopped.changed() => break,
        }
    }
    checkpoints
}

/// Failures of addresses already banned do not count, as fail2ban's "already banned": where
/// the kernel does not drop them (no nftables, a log from another host), a banned address's
/// lines keep coming, and counting them would re-ban it again and again (each re-ban an
/// escalation and a store write) and keep its history in every jail.
fn not_banned(outcome: Outcome, engine: &Engine) -> Outcome {
    match outcome {
        Outcome::Failures(mut found) => {
            found.retain(|f| !matches!(engine.check(f.host), GuardVerdict::Banned(_)));
            if found.is_empty() {
                Outcome::Matched
            } else {
                Outcome::Failures(found)
            }
        }
        other => other,
    }
}

fn ban_now(engine: &Engine, b: JailBan) {
    let scope = match b.scope {
        IpNet::V4(n) if n.prefix_len() == 32 => Scope::Ip(n.addr().into()),
        IpNet::V6(n) if n.prefix_len() == 128 => Scope::Ip(n.addr().into()),
        net => Scope::Prefix(net),
    };
    tracing::info!(jail = %b.jail, scope = %scope, failures = b.failures, ttl_secs = b.ttl.as_secs(), "jail ban");
    engine.emit(
        Sensor::Logs,
        Subject::ip(b.scope.addr()),
        EventKind::JailTripped {
            jail: b.jail,
            scope,
            ttl: b.ttl,
            reason: b.reason,
        },
    );
}
