//! `corosync-qnetd-certutil`: the stock script's options and exit codes on
//! top of qnetd's PKI, for pcs (`pcs qdevice setup`, the pcsd endpoint that
//! signs node certificates), crmsh and Proxmox (`pvecm qdevice setup`):
//!
//! * `-i [-G]`: create the CA and the server certificate in the folder (see
//!   `nssdir`), refused when the folder already holds a database or key
//!   material;
//! * `-s -c CSR -n CLUSTER`: sign the DER request made on a node by
//!   `corosync-qdevice-net-certutil -r`, write the DER certificate to
//!   `FOLDER/cluster-CLUSTER.crt` and print `Certificate stored in PATH`,
//!   the line pcs and crmsh read;
//! * `-h`, or no operation: usage, exit 0.
//!
//! Exit codes as the stock script: 0 ok; 1 bad option, already initialised,
//! not initialised, or the operation failed; 2 the request file cannot be
//! opened or no cluster name was given.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use qnetd_certs::{describe, nss, InitOptions, Pki, DEFAULT_VALIDITY_DAYS};

use super::getopt::{self, Opt, Style};
use super::nssdir::{self, Layout};

/// Largest request file read (a request is about 1 KiB).
const MAX_REQUEST: u64 = 1 << 20;

enum Operation {
    Init,
    Sign,
}

/// A failure: the message for stderr and the exit code.
struct Failure(u8, String);

fn usage(argv0: &str, dir: &Path) {
    println!("{argv0}: [-i|-s] [-c certificate] [-G] [-n cluster_name]");
    println!();
    println!(" -i                  create the QNetd CA and the server certificate in");
    println!("                     {}", dir.display());
    println!(" -s                  sign a cluster certificate request (needs -c and -n)");
    println!(" -c certificate      the request file (corosync-qdevice-net-certutil -r)");
    println!(" -G                  new files get no group write permission");
    println!(" -n cluster_name     the cluster name (totem.cluster_name), for -s");
}

/// Runs `corosync-qnetd-certutil` with `argv` (including `argv[0]`).
pub fn run(argv: &[OsString]) -> ExitCode {
    let argv0 = argv
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    let settings = match super::file_settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{argv0}: {e}");
            return ExitCode::from(1);
        }
    };
    let dir = settings.tls_dir;
    let (opts, _) = getopt::parse(
        argv.get(1..).unwrap_or(&[]),
        "Ghisc:n:",
        Style::StopAtOperand,
    );
    let mut op = None;
    let mut csr: Option<PathBuf> = None;
    let mut cluster = String::new();
    let mut group_write = true;
    for opt in opts {
        match opt {
            Opt::Known('i', _) => op = Some(Operation::Init),
            Opt::Known('s', _) => op = Some(Operation::Sign),
            Opt::Known('h', _) => {
                usage(&argv0, &dir);
                return ExitCode::SUCCESS;
            }
            Opt::Known('c', Some(v)) => csr = Some(PathBuf::from(v)),
            Opt::Known('G', _) => group_write = false,
            Opt::Known('n', Some(v)) => cluster = v.to_string_lossy().into_owned(),
            Opt::Unknown(c) => {
                eprintln!("Invalid option: -{c}");
                return ExitCode::from(1);
            }
            Opt::MissingValue(c) => {
                eprintln!("Option -{c} requires an argument.");
                return ExitCode::from(1);
            }
            Opt::Known(..) => {}
        }
    }
    let result = match op {
        None => {
            usage(&argv0, &dir);
            return ExitCode::SUCCESS;
        }
        Some(Operation::Init) => init(&dir, group_write),
        Some(Operation::Sign) => sign(&dir, csr.as_deref(), &cluster, group_write, &argv0),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, msg)) => {
            eprintln!("{msg}");
            ExitCode::from(code)
        }
    }
}

/// `-i`: the empty NSS database first (so a missing `certutil` stops us
/// before any key exists), then the CA and server certificate.
fn init(dir: &Path, group_write: bool) -> Result<(), Failure> {
    if nss::has_db(dir) {
        return Err(Failure(
            1,
            format!(
                "Certificate database ({}) already exists. Delete it to initialize new db \
                 (a new CA means new certificates for every cluster)",
                dir.display()
            ),
        ));
    }
    let pem = nssdir::key_files_present(dir);
    if !pem.is_empty() {
        return Err(Failure(
            1,
            format!(
                "{} already holds qnetd key material ({}) but no certificate database; \
                 delete the folder to initialize a new CA, or move the files away",
                dir.display(),
                pem.iter()
                    .filter_map(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let layout = Layout::for_dir(dir, group_write);
    let created_dir = !dir.is_dir();
    if created_dir {
        println!("Creating {}", dir.display());
        fs::DirBuilder::new()
            .recursive(true)
            .mode(layout.dir_mode())
            .create(dir)
            .map_err(|e| Failure(1, format!("Cannot create {}: {e}", dir.display())))?;
    }
    let undo = |created: &[PathBuf]| {
        for f in created {
            let _ = fs::remove_file(f);
        }
        if created_dir {
            let _ = fs::remove_dir(dir);
        }
    };
    println!(
        "Creating an empty NSS certificate database in {} (no keys: qnetd keeps them as PEM files)",
        dir.display()
    );
    let db_files = nss::create_empty_db(dir).map_err(|e| {
        undo(&[]);
        Failure(
            1,
            format!(
                "Certificate database ({}) cannot be created: {e}",
                dir.display()
            ),
        )
    })?;
    println!("Creating the CA \"QNet CA\" and the server certificate \"Qnetd Server\"");
    let report = Pki::new(dir).init(InitOptions::default()).map_err(|e| {
        undo(&db_files);
        Failure(1, format!("Cannot create the CA: {e}"))
    })?;
    layout.apply_all(dir).map_err(|e| {
        Failure(
            1,
            format!("Cannot set the owner or mode in {}: {e}", dir.display()),
        )
    })?;
    println!("  CA:     SHA-256 {}", report.ca.sha256_fingerprint);
    println!("  server: SHA-256 {}", report.server.sha256_fingerprint);
    println!(
        "QNetd CA certificate is exported as {}",
        dir.join(Pki::CA_EXPORT).display()
    );
    Ok(())
}

/// `-s`: checks in the stock order (request file, cluster name, database),
/// then signs.
fn sign(
    dir: &Path,
    csr: Option<&Path>,
    cluster: &str,
    group_write: bool,
    argv0: &str,
) -> Result<(), Failure> {
    let csr_path = csr.unwrap_or(Path::new(""));
    if csr_path.as_os_str().is_empty() || csr_path.symlink_metadata().is_err() {
        return Err(Failure(
            2,
            format!("Can't open certificate file {}", csr_path.display()),
        ));
    }
    if cluster.is_empty() {
        return Err(Failure(2, "You have to specify cluster name".into()));
    }
    if !nss::has_db(dir) {
        return Err(Failure(
            1,
            format!("Certificate database doesn't exists. Use {argv0} -i to create it"),
        ));
    }
    println!("Signing cluster certificate");
    let request = read_request(csr_path)?;
    let signed = Pki::new(dir)
        .sign_csr(&request, cluster, DEFAULT_VALIDITY_DAYS)
        .map_err(|e| Failure(1, format!("Cannot sign {}: {e}", csr_path.display())))?;
    let out = dir.join(format!("cluster-{cluster}.crt"));
    let layout = Layout::for_dir(dir, group_write);
    nssdir::replace_file(&out, &signed.der, &layout, 0o644)
        .map_err(|e| Failure(1, format!("Cannot write {}: {e}", out.display())))?;
    if let Some(info) = describe(&signed.der)
        .ok()
        .and_then(|v| v.into_iter().next())
    {
        println!(
            "  subject {}, valid until {}",
            info.subject, info.not_after_rfc3339
        );
    }
    println!("Certificate stored in {}", out.display());
    Ok(())
}

fn read_request(path: &Path) -> Result<Vec<u8>, Failure> {
    use std::io::Read;
    let mut data = Vec::new();
    fs::File::open(path)
        .and_then(|f| f.take(MAX_REQUEST + 1).read_to_end(&mut data))
        .map_err(|e| {
            Failure(
                2,
                format!("Can't open certificate file {}: {e}", path.display()),
            )
        })?;
    if data.len() as u64 > MAX_REQUEST {
        return Err(Failure(
            1,
            format!(
                "{} is larger than 1 MiB: not a certificate request",
                path.display()
            ),
        ));
    }
    Ok(data)
}
