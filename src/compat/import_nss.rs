//! `qnetd certs import-nss`: moves an existing corosync-qnetd host to qnetd
//! without touching its clusters. The CA (with its key) and the server
//! certificate (with its key) are exported from the stock NSS database with
//! `pk12util`, checked (each key belongs to its certificate, the server
//! certificate is issued by the CA, qnetd can sign with the CA key) and
//! written as qnetd's PEM files. Node certificates signed by that CA stay
//! valid, so nodes reconnect over TLS with what they have.
//!
//! When the target folder is the database's own folder (the package's
//! layout, see `nssdir`), the folder is rebuilt beside the old one and then
//! swapped in: the old database, the only other copy of the CA key, is kept
//! as `<folder>.pre-qnetd` (owner and mode unchanged) for a way back, and the
//! folder gets qnetd's files plus an empty NSS database, so one CA remains
//! in use.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use openssl::pkcs12::Pkcs12;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use qnetd_certs::{describe, nss, write_new_file, Pki};

use super::nssdir::{self, Layout};

/// The stock nicknames.
pub const CA_NICKNAME: &str = "QNet CA";
/// The stock server certificate nickname (`cert_nickname`).
pub const SERVER_NICKNAME: &str = "QNetd Cert";

/// Suffix of the kept original folder.
pub const BACKUP_SUFFIX: &str = ".pre-qnetd";

/// What to import and where.
#[derive(Debug, Clone)]
pub struct Import {
    /// The NSS database folder.
    pub nssdb: PathBuf,
    /// qnetd's TLS folder (may be the same folder).
    pub dir: PathBuf,
    /// Nickname of the CA in the database.
    pub ca_nickname: String,
    /// Nickname of the server certificate in the database.
    pub server_nickname: String,
}

/// A key and its certificate taken from the database.
struct Pair {
    key: PKey<Private>,
    cert: X509,
}

fn export(nssdb: &Path, nickname: &str, scratch: &Path) -> Result<Pair, String> {
    let der = nss::export_pkcs12(nssdb, nickname, scratch).map_err(|e| {
        // Name what is there, to pick the right --ca-nickname/--server-nickname.
        let held = match nss::nicknames(nssdb) {
            Ok(names) if !names.is_empty() => {
                format!(" (the database holds: {})", names.join(", "))
            }
            _ => String::new(),
        };
        format!(
            "cannot export \"{nickname}\" with its key from {}: {e}{held}",
            nssdb.display()
        )
    })?;
    let parsed = Pkcs12::from_der(&der)
        .and_then(|p| p.parse2(""))
        .map_err(|e| format!("cannot read the PKCS#12 export of \"{nickname}\": {e}"))?;
    match (parsed.pkey, parsed.cert) {
        (Some(key), Some(cert)) => Ok(Pair { key, cert }),
        _ => Err(format!(
            "the database in {} has no private key for \"{nickname}\"; qnetd needs the key to \
             serve TLS (server certificate) and to sign node certificates (CA)",
            nssdb.display()
        )),
    }
}

fn check(ca: &Pair, server: &Pair) -> Result<(), String> {
    let ossl = |e: openssl::error::ErrorStack| e.to_string();
    let ca_pub = ca.cert.public_key().map_err(ossl)?;
    if !ca_pub.public_eq(&ca.key) {
        return Err("the CA key does not belong to the CA certificate".into());
    }
    if !ca.cert.verify(&ca_pub).map_err(ossl)? {
        return Err("the CA certificate is not self-signed".into());
    }
    if !server
        .cert
        .public_key()
        .map_err(ossl)?
        .public_eq(&server.key)
    {
        return Err("the server key does not belong to the server certificate".into());
    }
    if !server.cert.verify(&ca_pub).map_err(ossl)? {
        return Err("the server certificate is not issued by the CA".into());
    }
    Ok(())
}

/// The PEM files to write, with their names.
fn pem_files(ca: &Pair, server: &Pair) -> Result<Vec<(&'static str, Vec<u8>)>, String> {
    let ossl = |e: openssl::error::ErrorStack| e.to_string();
    let ca_pem = ca.cert.to_pem().map_err(ossl)?;
    Ok(vec![
        (
            Pki::CA_KEY,
            ca.key.private_key_to_pem_pkcs8().map_err(ossl)?,
        ),
        (
            Pki::SERVER_KEY,
            server.key.private_key_to_pem_pkcs8().map_err(ossl)?,
        ),
        (Pki::CA_CERT, ca_pem.clone()),
        (Pki::SERVER_CERT, server.cert.to_pem().map_err(ossl)?),
        (Pki::CA_EXPORT, ca_pem),
    ])
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn io_err<'a>(what: &'a str, path: &'a Path) -> impl Fn(std::io::Error) -> String + 'a {
    move |e| format!("cannot {what} {}: {e}", path.display())
}

/// Runs the import; returns the lines to print.
pub fn import(job: &Import) -> Result<Vec<String>, String> {
    if !nss::has_db(&job.nssdb) {
        return Err(format!(
            "{} holds no NSS database (none of {}); nothing to import",
            job.nssdb.display(),
            nss::DB_FILES.join(", ")
        ));
    }
    let in_place = same_dir(&job.nssdb, &job.dir);
    if !in_place {
        let present = nssdir::pem_files_present(&job.dir);
        if !present.is_empty() {
            return Err(format!(
                "{} already holds qnetd key material ({}); nothing was changed",
                job.dir.display(),
                present
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    } else if !nssdir::key_files_present(&job.dir).is_empty() {
        return Err(format!(
            "{} already holds qnetd key material next to the NSS database; nothing was changed",
            job.dir.display()
        ));
    }

    let parent = job
        .dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let name = job
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| format!("{} is not a folder name", job.dir.display()))?;
    // A private scratch folder: the PKCS#12 exports hold private keys.
    let scratch = parent.join(format!(".{name}.qnetd-import"));
    let _ = fs::remove_dir_all(&scratch);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&scratch)
        .map_err(io_err("create", &scratch))?;
    let result = import_via(job, in_place, &parent, &name, &scratch);
    let _ = fs::remove_dir_all(&scratch);
    result
}

fn import_via(
    job: &Import,
    in_place: bool,
    parent: &Path,
    name: &str,
    scratch: &Path,
) -> Result<Vec<String>, String> {
    let export_dir = scratch.join("export");
    fs::create_dir(&export_dir).map_err(io_err("create", &export_dir))?;
    let ca = export(&job.nssdb, &job.ca_nickname, &export_dir)?;
    let server = export(&job.nssdb, &job.server_nickname, &export_dir)?;
    check(&ca, &server).map_err(|e| {
        format!(
            "{} cannot be imported: {e}; check the nicknames (--ca-nickname, --server-nickname) \
             with `certutil -L -d {}`",
            job.nssdb.display(),
            job.nssdb.display()
        )
    })?;
    let files = pem_files(&ca, &server)?;

    // Build the new folder's contents in the scratch folder.
    let new = scratch.join("new");
    fs::create_dir(&new).map_err(io_err("create", &new))?;
    for (file, data) in &files {
        write_new_file(&new.join(file), data, Layout::pem_mode(file)).map_err(|e| e.to_string())?;
    }
    // qnetd must be able to sign node certificates with this CA key.
    Pki::new(&new)
        .issue_client("import-check", 1)
        .map_err(|e| format!("the CA key was exported but qnetd cannot sign with it: {e}"))?;

    let file = |name: &str| -> &[u8] {
        files
            .iter()
            .find(|f| f.0 == name)
            .map(|f| &f.1[..])
            .unwrap_or_default()
    };
    let mut lines = Vec::new();
    if let Ok(infos) = describe(file(Pki::CA_CERT)) {
        for i in infos {
            lines.push(format!(
                "CA:     {} ({}), SHA-256 {}",
                i.subject, i.key_type, i.sha256_fingerprint
            ));
        }
    }
    if let Ok(infos) = describe(file(Pki::SERVER_CERT)) {
        for i in infos {
            lines.push(format!(
                "server: {} ({}), valid until {}",
                i.subject, i.key_type, i.not_after_rfc3339
            ));
        }
    }

    if !in_place {
        let dir = &job.dir;
        if !dir.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io_err("create", dir))?;
        }
        for (file, data) in &files {
            write_new_file(&dir.join(file), data, Layout::pem_mode(file))
                .map_err(|e| e.to_string())?;
        }
        lines.push(format!(
            "Wrote {} to {}; the NSS database in {} was not changed.",
            files.iter().map(|f| f.0).collect::<Vec<_>>().join(", "),
            dir.display(),
            job.nssdb.display()
        ));
        return Ok(lines);
    }

    // In place: an empty NSS database for pcs, the public files kept, the
    // old folder's owner, group and mode; then swap the folders.
    let old_meta = fs::metadata(&job.dir).map_err(io_err("read", &job.dir))?;
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let layout = Layout {
        owner: root.then(|| (old_meta.uid(), old_meta.gid())),
        group_write: old_meta.permissions().mode() & 0o020 != 0,
    };
    nss::create_empty_db(&new).map_err(|e| e.to_string())?;
    for entry in fs::read_dir(&job.dir).map_err(io_err("read", &job.dir))? {
        let Ok(entry) = entry else { continue };
        let fname = entry.file_name().to_string_lossy().into_owned();
        let public =
            (fname.starts_with("cluster-") && fname.ends_with(".crt")) || fname.contains(".crq");
        if public && entry.file_type().is_ok_and(|t| t.is_file()) {
            let to = new.join(&fname);
            fs::copy(entry.path(), &to).map_err(io_err("copy", &entry.path()))?;
            layout
                .apply(&to, 0o644)
                .map_err(io_err("set the mode of", &to))?;
        }
    }
    layout
        .apply_all(&new)
        .map_err(io_err("set the owner or mode of", &new))?;
    fs::set_permissions(
        &new,
        fs::Permissions::from_mode(old_meta.permissions().mode() & 0o7777),
    )
    .map_err(io_err("set the mode of", &new))?;

    let mut backup = parent.join(format!("{name}{BACKUP_SUFFIX}"));
    if backup.exists() {
        backup = parent.join(format!("{name}{BACKUP_SUFFIX}.{}", qnetd_certs::unix_now()));
    }
    fs::rename(&job.dir, &backup).map_err(io_err("move away", &job.dir))?;
    if let Err(e) = fs::rename(&new, &job.dir) {
        let _ = fs::rename(&backup, &job.dir);
        return Err(format!(
            "cannot move the new folder into place: {e}; nothing was changed"
        ));
    }
    lines.push(format!(
        "{} now holds qnetd's key material and an empty NSS database; the original database \
         (the old copy of the CA key) is kept in {} as it was: delete it once the clusters \
         have reconnected, or move it back to return to corosync-qnetd.",
        job.dir.display(),
        backup.display()
    ));
    Ok(lines)
}

/// `qnetd certs import-nss`: prints the report, or the error.
pub fn cli(job: &Import) -> ExitCode {
    match import(job) {
        Ok(lines) => {
            println!(
                "Imported the CA and the server certificate from {}.",
                job.nssdb.display()
            );
            for l in lines {
                println!("  {l}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("qnetd certs: error: {e}");
            ExitCode::FAILURE
        }
    }
}
