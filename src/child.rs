//! `moat run [OPTIONS] -- CMD [ARGS…]`: Moat runs the app it protects, so one process goes into
//! a one-process container (the Ghost image's entry point becomes `moat run … -- node …`).
//!
//! Moat starts CMD with its own stdin, stdout and stderr, passes SIGTERM and SIGINT on to it
//! (SIGHUP stays Moat's: a reload), reports ready once the upstream port answers, and exits with
//! CMD's status when CMD exits. As PID 1 it also reaps the orphans the kernel hands it, which
//! would otherwise pile up as zombies.

use anyhow::Context;
use std::process::ExitStatus;
use std::time::Duration;
use tokio::process::{Child, Command};

/// How long the app gets to stop after the signal is passed on, before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(30);

pub struct App {
    child: Child,
    pid: i32,
}

impl App {
    pub fn spawn(argv: &[String]) -> anyhow::Result<App> {
        let (prog, args) = argv.split_first().context("no command after --")?;
        let child = Command::new(prog)
            .args(args)
            .kill_on_drop(false)
            .spawn()
            .with_context(|| format!("cannot start `{prog}`"))?;
        let pid = child.id().context("the app exited at once")? as i32;
        tracing::info!(pid, command = %argv.join(" "), "started the app");
        Ok(App { child, pid })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits for the app to exit.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Passes `signal` on, waits up to `grace`, then kills it.
    pub async fn stop(&mut self, signal: i32, grace: Duration) -> std::io::Result<ExitStatus> {
        // SAFETY: kill(2) with the pid of a child not yet waited for (so not reused).
        unsafe {
            libc::kill(self.pid, signal);
        }
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => status,
            Err(_) => {
                tracing::warn!(
                    pid = self.pid,
                    grace_secs = grace.as_secs(),
                    "the app did not stop in time; killing it"
                );
                let _ = self.child.start_kill();
                self.child.wait().await
            }
        }
    }
}

/// The exit code a shell would report for `status`: the code, or 128 + the signal.
pub fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c as u8,
        (None, Some(s)) => (128 + s) as u8,
        _ => 1,
    }
}

/// Waits until something accepts TCP connections at the upstream's `authority` (an address,
/// or a name through Moat's own resolver, as the proxy connects), trying every 100 ms for at
/// most `limit`. False if it never did.
pub async fn wait_for_port(authority: &str, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if moat_dns::connect_tcp(authority).await.is_ok() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// As PID 1, reaps every exited process but the app (whose status tokio collects): the
/// kernel makes PID 1 the parent of every orphan in the container. Elsewhere nothing is
/// reaped here, so no other child's status is ever taken from the code that waits for it.
pub async fn reap_orphans(app_pid: i32) {
    if std::process::id() != 1 {
        return;
    }
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut chld) = signal(SignalKind::child()) else {
        return;
    };
    loop {
        reap_once(app_pid);
        if chld.recv().await.is_none() {
            return;
        }
    }
}

fn reap_once(app_pid: i32) {
    loop {
        // SAFETY: waitid(2) with a zeroed siginfo it fills; WNOWAIT leaves the zombie in place
        // so that the app's own status is never taken here.
        let pid = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            if libc::waitid(
                libc::P_ALL,
                0,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            ) != 0
            {
                return;
            }
            info.si_pid()
        };
        if pid == 0 || pid == app_pid {
            return;
        }
        // SAFETY: reaps exactly the zombie seen above.
        unsafe {
            libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG);
        }
    }
}
