//! Files Moat keeps in its state directory (certificates, the cohort table), written so that a
//! crash or a full disk never leaves half of one behind.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

/// Write to a temp file in the same directory, fsync, rename over `path`, fsync the directory:
/// readers see the old or the new file, never half of one. `mode` applies from creation, so a
/// key is never briefly world-readable.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{}.tmp", fastrand::u32(..)));
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let written = options.open(&tmp).and_then(|mut file| {
        file.write_all(data)?;
        file.sync_all()
    });
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}
