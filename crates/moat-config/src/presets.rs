//! Presets: documented rule files embedded in the binary. Each is an ordinary rule file the
//! operator can read (`presets/NAME.toml` in the source tree) and copy to adapt.

pub const NAMES: &[&str] = &["ghost", "wordpress", "generic-form"];

pub fn get(name: &str) -> Option<&'static str> {
    match name {
        "ghost" => Some(include_str!("../../../presets/ghost.toml")),
        "wordpress" => Some(include_str!("../../../presets/wordpress.toml")),
        "generic-form" => Some(include_str!("../../../presets/generic-form.toml")),
        _ => None,
    }
}
