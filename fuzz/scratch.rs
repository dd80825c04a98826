//! The scratch directory of a fuzz target that needs files (included with `#[path]` by
//! `journal_recovery`, `fail2ban_filter` and `log_lines`): one per fuzzing process, under
//! /dev/shm where there is one (the code under test syncs), and those of fuzzers no longer
//! running are removed when the next one starts.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// This process's directory, `<shm or tmp>/<prefix><pid>`, made once.
pub fn workdir(prefix: &'static str) -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let parent = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        for e in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix(prefix) {
                if !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        parent.join(format!("{prefix}{}", std::process::id()))
    })
}
