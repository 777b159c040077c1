//! The drop-in for the Debian/RHEL `corosync-qnetd` package: installed
//! under the stock names (links to the `qnetd` binary), the binary behaves
//! as that program, so pcs, crmsh, Proxmox and the OCF agent keep working:
//!
//! * `corosync-qnetd`: the server with the stock options; without `-f` it
//!   detaches (see `daemon.rs`), and it never creates a CA by itself
//!   ([`serve`]);
//! * `corosync-qnetd-tool`: the admin socket client ([`qnetd_tool`]);
//! * `corosync-qnetd-certutil`: CA initialisation and signing of node
//!   certificate requests ([`certutil`]).
//!
//! Where the key material lives: qnetd's PEM files are kept in the folder
//! the stock tools and pcs know, the NSS database folder
//! (`/etc/corosync/qnetd/nssdb`); see [`nssdir`]. Settings come from qnetd's
//! settings file ([`SETTINGS_FILE`], or the file named by `QNETD_CONFIG`),
//! on top of defaults in which `tls_dir` is that folder.

pub mod certutil;
pub mod getopt;
pub mod import_nss;
pub mod nssdir;
pub mod qnetd_tool;
pub mod serve;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use qnetd_core::config::Settings;

/// qnetd's settings file, read by the compatibility commands when it exists.
pub const SETTINGS_FILE: &str = "/etc/qnetd/qnetd.toml";
/// Environment variable naming another settings file (empty: none).
pub const SETTINGS_ENV: &str = "QNETD_CONFIG";

/// Runs the program named by `argv[0]` if it is one of the stock names;
/// `None` for any other name (the `qnetd` command line).
pub fn dispatch() -> Option<ExitCode> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let name = program_name(args.first()?);
    match name.as_str() {
        "corosync-qnetd" => Some(serve::run(&args)),
        "corosync-qnetd-tool" => Some(qnetd_tool::run(&args)),
        "corosync-qnetd-certutil" => Some(certutil::run(&args)),
        _ => None,
    }
}

/// The last path component of `argv[0]` (what `err(3)` prints as the
/// program name).
pub fn program_name(argv0: &OsString) -> String {
    Path::new(argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The settings file to read, if any: `QNETD_CONFIG` when set (empty means
/// none), else [`SETTINGS_FILE`] when it exists.
pub fn settings_file() -> Option<PathBuf> {
    match std::env::var_os(SETTINGS_ENV) {
        Some(v) if v.is_empty() => None,
        Some(v) => Some(PathBuf::from(v)),
        None => Some(PathBuf::from(SETTINGS_FILE)).filter(|p| p.exists()),
    }
}

/// The defaults of the compatibility commands: qnetd's, except that the TLS
/// material lives in the stock NSS database folder (`nss_db_dir`).
pub fn base_settings() -> Settings {
    let mut s = Settings::default();
    s.tls_dir = s.nss_db_dir.clone();
    s
}

/// [`base_settings`] with the settings file applied (no command line).
pub fn file_settings() -> Result<Settings, String> {
    let mut s = base_settings();
    if let Some(path) = settings_file() {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read the settings file {}: {e}", path.display()))?;
        s.apply_toml(&text, &path).map_err(|e| e.to_string())?;
    }
    Ok(s)
}

/// The text of an OS error without Rust's " (os error N)" suffix, as
/// `strerror(3)` gives it.
pub fn strerror(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}
