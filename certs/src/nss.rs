//! The few NSS database operations the corosync-qnetd compatibility needs,
//! done by running the NSS command-line tools (`certutil`, `pk12util`,
//! Debian package `libnss3-tools`) rather than by linking NSS:
//!
//! * whether a folder holds an NSS database, judged by the same file names
//!   pcs and the stock scripts look for ([`DB_FILES`]);
//! * creating an empty database (no certificate, no key, empty password),
//!   which is what `corosync-qnetd-certutil -i` leaves in the folder pcs
//!   tests: qnetd's own keys stay PEM files;
//! * exporting a certificate with its private key as PKCS#12, to import the
//!   CA and the server certificate of an existing corosync-qnetd host.
//!
//! The tools are found in `PATH`; `QNETD_NSS_CERTUTIL` and
//! `QNETD_NSS_PK12UTIL` name other programs (tests use stand-ins).

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Files whose presence makes a folder an NSS database: the SQLite format
/// (`cert9.db`, `key4.db`, `pkcs11.txt`) and the old Berkeley DB format
/// (`cert8.db`, `key3.db`, `secmod.db`). pcs 0.11 calls a qnetd or qdevice
/// folder "initialized" when any of them exists.
pub const DB_FILES: [&str; 6] = [
    "cert9.db",
    "key4.db",
    "pkcs11.txt",
    "cert8.db",
    "key3.db",
    "secmod.db",
];

/// The password file the stock scripts keep next to the database (empty
/// password).
pub const PASSWORD_FILE: &str = "pwdfile.txt";

/// Why an NSS tool could not do its job.
#[derive(Debug)]
pub enum NssError {
    /// The tool could not be started (not installed?).
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        source: io::Error,
    },
    /// The tool ran and failed.
    Failed {
        /// The command line, for the message.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed (stderr, else stdout), trimmed.
        output: String,
    },
    /// The folder holds no NSS database.
    NoDatabase {
        /// The folder.
        dir: PathBuf,
    },
    /// A scratch file could not be written or read.
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

impl fmt::Display for NssError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NssError::Spawn { program, source } => write!(
                f,
                "cannot run {program}: {source}; install the NSS tools \
                 (Debian/Ubuntu: apt-get install libnss3-tools; RHEL: dnf install nss-tools)"
            ),
            NssError::Failed {
                command,
                status,
                output,
            } => write!(f, "`{command}` failed ({status}): {output}"),
            NssError::NoDatabase { dir } => write!(
                f,
                "{} holds no NSS database (none of {} found)",
                dir.display(),
                DB_FILES.join(", ")
            ),
            NssError::Io { path, source } => {
                write!(
                    f,
                    "cannot use the scratch file {}: {source}",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for NssError {}

/// The database files of `dir` that exist.
pub fn db_files_present(dir: &Path) -> Vec<PathBuf> {
    DB_FILES
        .iter()
        .map(|f| dir.join(f))
        .filter(|p| p.symlink_metadata().is_ok())
        .collect()
}

/// Whether `dir` holds an NSS database (any of [`DB_FILES`]), the test pcs
/// and the stock scripts use.
pub fn has_db(dir: &Path) -> bool {
    !db_files_present(dir).is_empty()
}

/// The `-d` argument for `dir`: `sql:DIR` for the SQLite format, `dbm:DIR`
/// when only the old format is there.
pub fn db_spec(dir: &Path) -> OsString {
    let prefix = if dir.join("cert9.db").exists() || !dir.join("cert8.db").exists() {
        "sql:"
    } else {
        "dbm:"
    };
    let mut s = OsString::from(prefix);
    s.push(dir.as_os_str());
    s
}

fn program(env: &str, default: &str) -> String {
    std::env::var(env)
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn certutil() -> String {
    program("QNETD_NSS_CERTUTIL", "certutil")
}

fn pk12util() -> String {
    program("QNETD_NSS_PK12UTIL", "pk12util")
}

/// Runs a tool to completion with stdin closed; fails on a non-zero exit.
fn run(program: &str, args: &[OsString]) -> Result<Output, NssError> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| NssError::Spawn {
            program: program.to_owned(),
            source,
        })?;
    if out.status.success() {
        return Ok(out);
    }
    let text = if out.stderr.iter().any(|b| !b.is_ascii_whitespace()) {
        &out.stderr
    } else {
        &out.stdout
    };
    Err(NssError::Failed {
        command: std::iter::once(program.to_owned())
            .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect::<Vec<_>>()
            .join(" "),
        status: out.status.to_string(),
        output: String::from_utf8_lossy(text).trim().to_owned(),
    })
}

/// Creates an empty NSS database (SQLite format, empty password) in the
/// existing folder `dir`; returns the database files that now exist.
pub fn create_empty_db(dir: &Path) -> Result<Vec<PathBuf>, NssError> {
    let mut d = OsString::from("sql:");
    d.push(dir.as_os_str());
    run(
        &certutil(),
        &["-N".into(), "-d".into(), d, "--empty-password".into()],
    )?;
    let files = db_files_present(dir);
    if files.is_empty() {
        return Err(NssError::NoDatabase {
            dir: dir.to_path_buf(),
        });
    }
    Ok(files)
}

/// The nicknames of the certificates in the database of `dir`, from
/// `certutil -L`.
pub fn nicknames(dir: &Path) -> Result<Vec<String>, NssError> {
    if !has_db(dir) {
        return Err(NssError::NoDatabase {
            dir: dir.to_path_buf(),
        });
    }
    let out = run(&certutil(), &["-L".into(), "-d".into(), db_spec(dir)])?;
    Ok(parse_nicknames(&String::from_utf8_lossy(&out.stdout)))
}

/// Parses `certutil -L`: after the header, each line is a nickname, spaces,
/// and the trust flags (`CTu,u,u`).
fn parse_nicknames(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|line| {
            let line = line.trim_end();
            let (name, trust) = line.rsplit_once(char::is_whitespace)?;
            let name = name.trim_end();
            let is_trust = trust.split(',').count() == 3
                && trust.chars().all(|c| c == ',' || c.is_ascii_alphabetic());
            (is_trust && !name.is_empty()).then(|| name.to_owned())
        })
        .collect()
}

/// Exports the certificate `nickname` with its private key from the
/// database of `dir` as PKCS#12 with an empty password (`pk12util -o`).
/// `scratch` is a private directory (mode 0700) for the temporary file,
/// which is removed before this returns.
pub fn export_pkcs12(dir: &Path, nickname: &str, scratch: &Path) -> Result<Vec<u8>, NssError> {
    if !has_db(dir) {
        return Err(NssError::NoDatabase {
            dir: dir.to_path_buf(),
        });
    }
    let out_file = scratch.join(format!("export-{}.p12", std::process::id()));
    let _ = fs::remove_file(&out_file);
    let mut args: Vec<OsString> = vec![
        "-o".into(),
        out_file.clone().into(),
        "-n".into(),
        nickname.into(),
        "-d".into(),
        db_spec(dir),
        "-W".into(),
        "".into(),
    ];
    let pwd = dir.join(PASSWORD_FILE);
    if pwd.is_file() {
        args.push("-k".into());
        args.push(pwd.into());
    }
    let result = run(&pk12util(), &args).and_then(|_| {
        fs::read(&out_file).map_err(|source| NssError::Io {
            path: out_file.clone(),
            source,
        })
    });
    let _ = fs::remove_file(&out_file);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nicknames_are_read_from_certutil_listing() {
        let listing = "\nCertificate Nickname                                         Trust Attributes\n\
                       \x20                                                            SSL,S/MIME,JAR/XPI\n\
                       \n\
                       QNet CA                                                      CTu,u,u\n\
                       QNetd Cert                                                   u,u,u\n";
        assert_eq!(parse_nicknames(listing), vec!["QNet CA", "QNetd Cert"]);
        assert!(parse_nicknames("").is_empty());
    }

    #[test]
    fn database_is_recognised_by_any_of_its_files() {
        let dir = std::env::temp_dir().join(format!("qnetd-nss-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        assert!(!has_db(&dir));
        assert_eq!(
            db_spec(&dir),
            OsString::from(format!("sql:{}", dir.display()))
        );
        fs::write(dir.join("cert8.db"), b"").unwrap();
        assert!(has_db(&dir));
        assert_eq!(
            db_spec(&dir),
            OsString::from(format!("dbm:{}", dir.display()))
        );
        fs::write(dir.join("cert9.db"), b"").unwrap();
        assert_eq!(
            db_spec(&dir),
            OsString::from(format!("sql:{}", dir.display()))
        );
        assert_eq!(db_files_present(&dir).len(), 2);
        fs::remove_dir_all(&dir).unwrap();
    }
}
