//! Parsers of single setting values shared by every part of the
//! configuration (the main settings and `[ha]`).

/// Parses a boolean the way corosync-qnetd does (on/yes/1, off/no/0).
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "yes" | "1" | "true" => Some(true),
        "off" | "no" | "0" | "false" => Some(false),
        _ => None,
    }
}
