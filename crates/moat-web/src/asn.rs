//! Which IP-to-ASN table the Who page groups sources by: `[cohorts] asn_table` when the
//! operator set one (the cohorts use it too), else the copy `moat asn refresh` wrote to the
//! state directory (read again when the file changes, so a refresh needs no restart), else the
//! table shipped in the binary.

use moat_core::AsnTable;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// The table `moat asn refresh` writes, in the state directory.
pub const STATE_FILE: &str = "asn-table.bin";

/// A table and where it came from, for the page to say.
#[derive(Clone)]
pub struct Table {
    pub table: TableRef,
    pub source: String,
}

#[derive(Clone)]
pub enum TableRef {
    Shipped(&'static AsnTable),
    Loaded(Arc<AsnTable>),
}

impl std::ops::Deref for TableRef {
    type Target = AsnTable;
    fn deref(&self) -> &AsnTable {
        match self {
            TableRef::Shipped(t) => t,
            TableRef::Loaded(t) => t,
        }
    }
}

pub struct AsnSource {
    state_file: PathBuf,
    /// The state file's table, with the modification time it was read at.
    cached: Mutex<Option<(SystemTime, Arc<AsnTable>)>>,
}

impl AsnSource {
    pub fn new(state_dir: &std::path::Path) -> AsnSource {
        AsnSource {
            state_file: state_dir.join(STATE_FILE),
            cached: Mutex::new(None),
        }
    }

    /// The table to use now. Blocking: it may read and inflate the state file, or decode the
    /// shipped table the first time (call it off the async threads).
    pub fn current(&self, configured: Option<&Arc<AsnTable>>) -> Table {
        if let Some(t) = configured {
            return Table {
                table: TableRef::Loaded(t.clone()),
                source: "[cohorts] asn_table".into(),
            };
        }
        let source = format!("{} (moat asn refresh)", self.state_file.display());
        if let Ok(modified) = std::fs::metadata(&self.state_file).and_then(|m| m.modified()) {
            let mut g = self.cached.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(t) = g
                .as_ref()
                .filter(|(at, _)| *at == modified)
                .map(|(_, t)| t.clone())
            {
                return Table {
                    table: TableRef::Loaded(t),
                    source,
                };
            }
            match std::fs::read(&self.state_file)
                .map_err(|e| e.to_string())
                .and_then(|b| AsnTable::from_pack(&b).map_err(|e| e.to_string()))
            {
                Ok(t) => {
                    let t = Arc::new(t);
                    *g = Some((modified, t.clone()));
                    return Table {
                        table: TableRef::Loaded(t),
                        source,
                    };
                }
                Err(e) => tracing::warn!(file = %self.state_file.display(), error = %e,
                    "the refreshed IP-to-ASN table does not read; using the shipped one"),
            }
        }
        Table {
            table: TableRef::Shipped(moat_core::asn::shipped()),
            source: format!("shipped: {}", moat_core::asn::SHIPPED_FROM),
        }
    }
}
