//! The presets are embedded with `include_str!` from the workspace's `presets/` folder, which
//! lies outside this package; cargo does not watch such files on its own, so an edited preset
//! would otherwise leave a stale one in the binary.

fn main() {
    for name in ["ghost", "wordpress", "generic-form"] {
        println!("cargo:rerun-if-changed=../../presets/{name}.toml");
    }
}
