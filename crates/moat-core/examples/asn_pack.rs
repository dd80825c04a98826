//! Builds Moat's compact IP-to-ASN table from iptoasn TSV or ip-location-db CSV files (the
//! shipped `crates/moat-core/data/asn-table.bin`; see `scripts/refresh-asn-table.sh`).
//! Overlapping ranges are dropped and counted, as `moat asn refresh` does.
//!
//! `cargo run --release -p moat-core --example asn_pack -- OUT IN...`

use moat_core::AsnTable;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((out, inputs)) = args.split_first().filter(|(_, i)| !i.is_empty()) else {
        eprintln!("usage: asn_pack OUT IN...");
        std::process::exit(2);
    };
    let mut text = String::new();
    for p in inputs {
        let t = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{p}: {e}"));
        text.push_str(&t);
        if !text.ends_with('\n') {
            text.push('\n');
        }
    }
    let (table, dropped) = AsnTable::parse_with(&text, false).unwrap_or_else(|e| panic!("{e}"));
    let pack = table.to_pack();
    std::fs::write(out, &pack).unwrap_or_else(|e| panic!("{out}: {e}"));
    eprintln!(
        "{out}: {} ranges ({dropped} overlapping dropped), {} bytes",
        table.len(),
        pack.len()
    );
}
