//! `qnetd certs export` / `qnetd certs import`: moving the TLS material of
//! one instance (CA with its key, server certificate with its key, the CA
//! export for the nodes) to the other instances of a high-availability
//! group, which must all present the same CA and server certificate
//! (docs/ha.md; the group refuses an instance with another CA).
//!
//! The bundle is one text file: a comment header, then each file as a line
//! `%% NAME` followed by its PEM text. It holds private keys: it is
//! written with mode 0600 and must travel over a secure channel.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use qnetd_certs::Pki;

/// Files of a bundle, in order; the last one (the nodes' CA export) is optional.
const FILES: [&str; 5] = [
    Pki::CA_CERT,
    Pki::CA_KEY,
    Pki::SERVER_CERT,
    Pki::SERVER_KEY,
    Pki::CA_EXPORT,
];
const MARK: &str = "%% ";
const MAX_BUNDLE: u64 = 1 << 20;

/// Why export or import failed (the message says what to do).
#[derive(Debug)]
pub enum BundleError {
    Io {
        path: PathBuf,
        action: &'static str,
        error: std::io::Error,
    },
    Missing {
        name: &'static str,
        from: String,
    },
    Invalid {
        name: String,
        detail: String,
    },
    Exists {
        dir: PathBuf,
    },
}

impl std::fmt::Display for BundleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BundleError::Io {
                path,
                action,
                error,
            } => write!(f, "cannot {action} {}: {error}", path.display()),
            BundleError::Missing { name, from } => write!(
                f,
                "{from} has no {name}; export from an instance whose TLS directory is complete (`qnetd certs show` there)"
            ),
            BundleError::Invalid { name, detail } => write!(f, "{name}: {detail}"),
            BundleError::Exists { dir } => write!(
                f,
                "{} already holds another CA or server certificate; every instance of a group must use the same ones: rerun with --force to replace them (the old files are kept as *.bak)",
                dir.display()
            ),
        }
    }
}

fn io<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(std::io::Error) -> BundleError + 'a {
    move |error| BundleError::Io {
        path: path.to_path_buf(),
        action,
        error,
    }
}

fn invalid(name: &str, detail: impl std::fmt::Display) -> BundleError {
    BundleError::Invalid {
        name: name.into(),
        detail: detail.to_string(),
    }
}

/// The material, checked: both keys match their certificates and the
/// server certificate was issued by the CA.
struct Material {
    files: Vec<(&'static str, Vec<u8>)>,
    ca_sha256: String,
}

fn check(files: Vec<(&'static str, Vec<u8>)>, from: &str) -> Result<Material, BundleError> {
    let get = |name: &'static str| {
        files
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, d)| d.as_slice())
            .ok_or_else(|| BundleError::Missing {
                name,
                from: from.into(),
            })
    };
    let cert = |name: &'static str| -> Result<X509, BundleError> {
        X509::from_pem(get(name)?)
            .map_err(|e| invalid(name, format!("not a PEM certificate ({e})")))
    };
    let key = |name: &'static str| -> Result<PKey<Private>, BundleError> {
        PKey::private_key_from_pem(get(name)?)
            .map_err(|e| invalid(name, format!("not a PEM private key ({e})")))
    };
    let ca = cert(Pki::CA_CERT)?;
    let ca_key = key(Pki::CA_KEY)?;
    let server = cert(Pki::SERVER_CERT)?;
    let server_key = key(Pki::SERVER_KEY)?;
    let matches = |c: &X509, k: &PKey<Private>| c.public_key().is_ok_and(|p| p.public_eq(k));
    if !matches(&ca, &ca_key) {
        return Err(invalid(Pki::CA_KEY, "is not the key of the CA certificate"));
    }
    if !matches(&server, &server_key) {
        return Err(invalid(
            Pki::SERVER_KEY,
            "is not the key of the server certificate",
        ));
    }
    let signed = ca
        .public_key()
        .and_then(|p| server.verify(&p))
        .unwrap_or(false);
    if !signed {
        return Err(invalid(
            Pki::SERVER_CERT,
            "was not issued by the CA of the same directory",
        ));
    }
    let der = ca
        .to_der()
        .map_err(|e| invalid(Pki::CA_CERT, e.to_string()))?;
    Ok(Material {
        files,
        ca_sha256: openssl::sha::sha256(&der)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    })
}

fn read_dir_files(dir: &Path) -> Result<Vec<(&'static str, Vec<u8>)>, BundleError> {
    let mut out = Vec::new();
    for name in FILES {
        let path = dir.join(name);
        match fs::read(&path) {
            Ok(d) => out.push((name, d)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && name == Pki::CA_EXPORT => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BundleError::Missing {
                    name,
                    from: dir.display().to_string(),
                })
            }
            Err(e) => return Err(io(&path, "read")(e)),
        }
    }
    Ok(out)
}

/// Parses a bundle's text.
fn parse(text: &str, from: &str) -> Result<Vec<(&'static str, Vec<u8>)>, BundleError> {
    let mut out: Vec<(&'static str, Vec<u8>)> = Vec::new();
    let mut current: Option<usize> = None;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix(MARK) {
            let name = name.trim();
            let known = FILES
                .iter()
                .find(|f| **f == name)
                .ok_or_else(|| invalid(from, format!("unknown file '{name}' in the bundle")))?;
            if out.iter().any(|(n, _)| n == known) {
                return Err(invalid(from, format!("'{name}' appears twice")));
            }
            out.push((known, Vec::new()));
            current = Some(out.len() - 1);
        } else if let Some(i) = current {
            out[i].1.extend_from_slice(line.as_bytes());
            out[i].1.push(b'\n');
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            return Err(invalid(
                from,
                "not a qnetd TLS bundle (made by `qnetd certs export`)",
            ));
        }
    }
    Ok(out)
}

/// `qnetd certs export`: writes the bundle of `dir` to `out` (mode 0600).
pub fn export(dir: &Path, out: &Path) -> Result<ExitCode, BundleError> {
    let m = check(read_dir_files(dir)?, &dir.display().to_string())?;
    let mut text = String::new();
    text.push_str("# qnetd TLS bundle: the CA and server certificate (with their keys) of one\n");
    text.push_str("# high-availability group. It holds PRIVATE KEYS: copy it over a secure\n");
    text.push_str(
        "# channel and delete it after `qnetd certs import --from FILE` on each instance.\n",
    );
    text.push_str(&format!("# CA SHA-256: {}\n", m.ca_sha256));
    for (name, data) in &m.files {
        text.push_str(MARK);
        text.push_str(name);
        text.push('\n');
        let body = String::from_utf8_lossy(data);
        text.push_str(body.trim_end());
        text.push('\n');
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(io(out, "create (it must not exist yet)"))?;
    f.write_all(text.as_bytes()).map_err(io(out, "write"))?;
    f.sync_all().map_err(io(out, "write"))?;
    println!(
        "Exported the TLS material of {} to {}",
        dir.display(),
        out.display()
    );
    println!("CA SHA-256 (the group's fingerprint): {}", m.ca_sha256);
    println!("On every other instance of the group:");
    println!(
        "  qnetd certs import --from {} [--dir {}]",
        file_name(out),
        dir.display()
    );
    println!("then start (or restart) qnetd there, and delete the bundle.");
    Ok(ExitCode::SUCCESS)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// `qnetd certs import`: installs a bundle into `dir`. Existing material
/// that differs is replaced only with `force` (kept as `*.bak`).
pub fn import(from: &Path, dir: &Path, force: bool) -> Result<ExitCode, BundleError> {
    let meta = fs::metadata(from).map_err(io(from, "read"))?;
    if meta.len() > MAX_BUNDLE {
        return Err(invalid(
            &from.display().to_string(),
            "larger than 1 MiB: not a bundle",
        ));
    }
    let text = fs::read_to_string(from).map_err(io(from, "read"))?;
    let m = check(
        parse(&text, &from.display().to_string())?,
        &from.display().to_string(),
    )?;
    let differs: Vec<&str> = m
        .files
        .iter()
        .filter(|(name, data)| fs::read(dir.join(name)).is_ok_and(|old| old != *data))
        .map(|(n, _)| *n)
        .collect();
    let same = m
        .files
        .iter()
        .all(|(name, data)| fs::read(dir.join(name)).is_ok_and(|old| old == *data));
    if same {
        println!(
            "{} already holds this material (CA SHA-256 {})",
            dir.display(),
            m.ca_sha256
        );
        return Ok(ExitCode::SUCCESS);
    }
    if !differs.is_empty() && !force {
        return Err(BundleError::Exists {
            dir: dir.to_path_buf(),
        });
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir, "create"))?;
    for name in &differs {
        let p = dir.join(name);
        let bak = dir.join(format!("{name}.bak"));
        fs::rename(&p, &bak).map_err(io(&p, "back up"))?;
    }
    for (name, data) in &m.files {
        let path = dir.join(name);
        let mode = if name.contains("key") { 0o600 } else { 0o644 };
        let tmp = dir.join(format!(".{name}.import"));
        let _ = fs::remove_file(&tmp);
        {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&tmp)
                .map_err(io(&tmp, "create"))?;
            f.write_all(data).map_err(io(&tmp, "write"))?;
            f.sync_all().map_err(io(&tmp, "write"))?;
        }
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(io(&tmp, "chmod"))?;
        fs::rename(&tmp, &path).map_err(io(&path, "replace"))?;
    }
    println!("Installed the TLS material in {}", dir.display());
    if !differs.is_empty() {
        println!(
            "(the previous files are kept as *.bak: {})",
            differs.join(", ")
        );
    }
    println!("CA SHA-256 (the group's fingerprint): {}", m.ca_sha256);
    println!("Start qnetd, or send SIGHUP to a running one to reload the certificates.");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("qnetd-bundle-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn export_then_import_gives_the_same_files_and_refuses_another_ca() {
        let a = scratch("a");
        Pki::new(&a).init(Default::default()).unwrap();
        let bundle = scratch("bundle.txt");
        let _ = fs::remove_file(&bundle);
        export(&a, &bundle).unwrap();
        assert_eq!(
            fs::metadata(&bundle).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let b = scratch("b");
        import(&bundle, &b, false).unwrap();
        for name in FILES {
            assert_eq!(
                fs::read(a.join(name)).unwrap(),
                fs::read(b.join(name)).unwrap(),
                "{name}"
            );
        }
        assert_eq!(
            fs::metadata(b.join(Pki::CA_KEY))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        // importing again is a no-op
        import(&bundle, &b, false).unwrap();
        // a directory with another CA is not overwritten without --force
        let c = scratch("c");
        Pki::new(&c).init(Default::default()).unwrap();
        assert!(matches!(
            import(&bundle, &c, false),
            Err(BundleError::Exists { .. })
        ));
        import(&bundle, &c, true).unwrap();
        assert_eq!(
            fs::read(a.join(Pki::CA_CERT)).unwrap(),
            fs::read(c.join(Pki::CA_CERT)).unwrap()
        );
        assert!(c.join(format!("{}.bak", Pki::CA_CERT)).exists());
        for d in [a, b, c] {
            let _ = fs::remove_dir_all(d);
        }
        let _ = fs::remove_file(bundle);
    }

    #[test]
    fn mismatched_keys_and_foreign_text_are_refused() {
        let a = scratch("m1");
        let b = scratch("m2");
        Pki::new(&a).init(Default::default()).unwrap();
        Pki::new(&b).init(Default::default()).unwrap();
        // the server key of another directory
        fs::copy(b.join(Pki::SERVER_KEY), a.join(Pki::SERVER_KEY)).unwrap();
        let out = scratch("m.txt");
        let e = export(&a, &out).unwrap_err();
        assert!(e.to_string().contains("not the key of the server"), "{e}");
        assert!(parse("hello\n", "x").is_err());
        for d in [a, b] {
            let _ = fs::remove_dir_all(d);
        }
    }
}
