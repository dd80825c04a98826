//! The outbox: one file per report that was not sent (dry runs) or that is delivered as a file
//! (X-ARF without a URL). Names start with the zero-padded time and the report id, so a plain
//! `ls` lists them in order.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::ReportError;

/// The file name for a report.
pub fn file_name(now_ms: u64, id: i64, target: &str, ext: &str) -> String {
    format!("{now_ms:013}-{id:010}-{target}.{ext}")
}

/// Writes the file (complete or not at all: a temporary file renamed into place).
pub fn write(
    dir: &Path,
    now_ms: u64,
    id: i64,
    target: &str,
    ext: &str,
    bytes: &[u8],
) -> Result<PathBuf, ReportError> {
    let err = |path: &Path, source| ReportError::Outbox {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    let name = file_name(now_ms, id, target, ext);
    let path = dir.join(&name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(|e| err(&tmp, e))?;
    f.write_all(bytes).map_err(|e| err(&tmp, e))?;
    f.sync_all().map_err(|e| err(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| err(&path, e))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_time_then_id() {
        let mut names = vec![
            file_name(1_700_000_000_100, 2, "arf", "eml"),
            file_name(999_999_999_999, 9, "webhook", "json"),
            file_name(1_700_000_000_100, 10, "abuseipdb", "json"),
        ];
        names.sort();
        assert_eq!(
            names,
            vec![
                "0999999999999-0000000009-webhook.json",
                "1700000000100-0000000002-arf.eml",
                "1700000000100-0000000010-abuseipdb.json",
            ]
        );
    }

    #[test]
    fn writes_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), 5, 1, "arf", "eml", b"hello").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"hello");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
