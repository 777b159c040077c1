//! `qnetd certs`: create and inspect the TLS material of qnetd.
//!
//! * `init` makes the CA and the server certificate in the TLS directory;
//! * `sign` signs a cluster certificate request made on a node with
//!   `corosync-qdevice-net-certutil -r -n CLUSTER` (the stock flow);
//! * `client` makes a cluster key and certificate here and bundles them as
//!   the `qdevice-net-node.p12` that the nodes import with
//!   `corosync-qdevice-net-certutil -m` (no CSR round trip);
//! * `show` prints subjects, validity and fingerprints;
//! * `import-nss` takes the CA and server certificate of a corosync-qnetd
//!   NSS database (see `compat/import_nss.rs`);
//! * `export` / `import` move the material to the other instances of a
//!   high-availability group (see `certs_bundle.rs`).
//!
//! The PKI itself is in the `qnetd-certs` crate.

use std::fs::{self, DirBuilder};
use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use qnetd_certs::{
    describe, write_new_file, CertError, CertInfo, InitOptions, Pki, DEFAULT_TLS_DIR,
    DEFAULT_VALIDITY_DAYS,
};

/// Largest certificate request or certificate file read (they are ~1 KiB).
const MAX_INPUT: u64 = 1 << 20;
/// `show` warns when a certificate expires in fewer days than this.
const WARN_DAYS: i64 = 30;
/// Name of the PKCS#12 bundle the node tools use.
const P12_FILE: &str = "qdevice-net-node.p12";
/// Where the node tools keep their NSS database.
const NODE_NSSDB: &str = "/etc/corosync/qdevice/net/nssdb";

/// Manage the CA, server and cluster certificates.
#[derive(clap::Args, Debug)]
pub struct CertsArgs {
    #[command(subcommand)]
    command: CertsCommand,
}

#[derive(clap::Subcommand, Debug)]
enum CertsCommand {
    /// Create the CA and the server certificate ("Qnetd Server").
    Init {
        /// TLS directory (created with mode 0700).
        #[arg(long, default_value = DEFAULT_TLS_DIR)]
        dir: PathBuf,
        /// Validity of the server certificate, in days.
        #[arg(long, default_value_t = DEFAULT_VALIDITY_DAYS, value_parser = clap::value_parser!(u32).range(1..))]
        days: u32,
    },
    /// Sign a cluster certificate request (from corosync-qdevice-net-certutil -r).
    Sign {
        /// The request, DER (qdevice-net-node.crq) or PEM.
        #[arg(long)]
        csr: PathBuf,
        /// The cluster name (totem.cluster_name); must equal the request's CN.
        #[arg(long)]
        cluster: String,
        /// Output file, DER [default: ./cluster-CLUSTER.crt].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Validity in days.
        #[arg(long, default_value_t = DEFAULT_VALIDITY_DAYS, value_parser = clap::value_parser!(u32).range(1..))]
        days: u32,
        /// TLS directory holding the CA.
        #[arg(long, default_value = DEFAULT_TLS_DIR)]
        dir: PathBuf,
    },
    /// Make a cluster key and certificate here, bundled for the nodes.
    Client {
        /// The cluster name (totem.cluster_name).
        #[arg(long)]
        cluster: String,
        /// Output directory [default: current directory].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Validity in days.
        #[arg(long, default_value_t = DEFAULT_VALIDITY_DAYS, value_parser = clap::value_parser!(u32).range(1..))]
        days: u32,
        /// TLS directory holding the CA.
        #[arg(long, default_value = DEFAULT_TLS_DIR)]
        dir: PathBuf,
    },
    /// Import the CA (with its key) and the server certificate from a
    /// corosync-qnetd NSS database (needs pk12util, libnss3-tools).
    ImportNss {
        /// The NSS database folder of corosync-qnetd.
        #[arg(long, default_value = "/etc/corosync/qnetd/nssdb")]
        nssdb: PathBuf,
        /// TLS directory to write qnetd's PEM files to; when it is the
        /// database folder itself, the old database is kept as
        /// FOLDER.pre-qnetd and replaced by an empty one.
        #[arg(long, default_value = DEFAULT_TLS_DIR)]
        dir: PathBuf,
        /// Nickname of the CA in the database.
        #[arg(long, default_value = crate::compat::import_nss::CA_NICKNAME)]
        ca_nickname: String,
        /// Nickname of the server certificate (corosync-qnetd's cert_nickname).
        #[arg(long, default_value = crate::compat::import_nss::SERVER_NICKNAME)]
        server_nickname: String,
    },
    /// Write the CA and server certificate with their keys to one bundle
    /// file (mode 0600) for the other instances of an HA group.
    Export {
        /// TLS directory to export.
        #[arg(long, default_value = DEFAULT_TLS_DIR)]
        dir: PathBuf,
        /// The bundle to write (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Install a bundle made by `qnetd certs export` (HA group instances
    /// must share one CA and server certificate).
    Import {
        /// The bundle.
        #[arg(long)]
        from: PathBuf,
        /// TLS directory to install into.
        #[arg(long, default_value = DEFAULT_TLS_DIR)]
        dir: PathBuf,
        /// Replace a different CA or server certificate (kept as *.bak).
        #[arg(long)]
        force: bool,
    },
    /// Show the certificates: subjects, expiry, fingerprints.
    Show {
        /// TLS directory.
        #[arg(long, default_value = DEFAULT_TLS_DIR)]
        dir: PathBuf,
        /// Certificate files (PEM or DER) to show instead of the directory's.
        files: Vec<PathBuf>,
    },
}

/// Run `qnetd certs ...`; errors are printed on stderr.
pub fn run(args: CertsArgs) -> ExitCode {
    let result = match args.command {
        CertsCommand::Init { dir, days } => init(&dir, days),
        CertsCommand::Sign {
            csr,
            cluster,
            out,
            days,
            dir,
        } => sign(&dir, &csr, &cluster, out, days),
        CertsCommand::Client {
            cluster,
            out,
            days,
            dir,
        } => client(&dir, &cluster, out, days),
        CertsCommand::Show { dir, files } => show(&dir, &files),
        CertsCommand::Export { dir, out } => {
            return bundle_result(crate::certs_bundle::export(&dir, &out))
        }
        CertsCommand::Import { from, dir, force } => {
            return bundle_result(crate::certs_bundle::import(&from, &dir, force))
        }
        CertsCommand::ImportNss {
            nssdb,
            dir,
            ca_nickname,
            server_nickname,
        } => {
            return crate::compat::import_nss::cli(&crate::compat::import_nss::Import {
                nssdb,
                dir,
                ca_nickname,
                server_nickname,
            })
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("qnetd certs: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bundle_result(r: Result<ExitCode, crate::certs_bundle::BundleError>) -> ExitCode {
    r.unwrap_or_else(|e| {
        eprintln!("qnetd certs: error: {e}");
        ExitCode::FAILURE
    })
}

fn init(dir: &Path, days: u32) -> Result<ExitCode, CertError> {
    let pki = Pki::new(dir);
    let report = pki.init(InitOptions {
        server_validity_days: days,
        ..InitOptions::default()
    })?;
    println!(
        "Created the qnetd CA and server certificate in {}:",
        dir.display()
    );
    for f in &report.files {
        println!("  {}", f.display());
    }
    print_info(&report.ca);
    print_info(&report.server);
    let export = pki.path(Pki::CA_EXPORT);
    println!();
    println!("Next steps:");
    println!(
        "  1. Copy {} to every cluster node and there run:",
        export.display()
    );
    println!(
        "       corosync-qdevice-net-certutil -i -c {}",
        Pki::CA_EXPORT
    );
    println!("  2. Give the cluster a certificate, either");
    println!("     a) stock flow: on one node `corosync-qdevice-net-certutil -r -n CLUSTER`,");
    println!("        copy {NODE_NSSDB}/qdevice-net-node.crq here and run");
    println!(
        "        `qnetd certs sign --dir {} --csr qdevice-net-node.crq --cluster CLUSTER`, or",
        dir.display()
    );
    println!(
        "     b) here: `qnetd certs client --dir {} --cluster CLUSTER` and follow its output.",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn sign(
    dir: &Path,
    csr_path: &Path,
    cluster: &str,
    out: Option<PathBuf>,
    days: u32,
) -> Result<ExitCode, CertError> {
    qnetd_certs::validate_cluster_name(cluster)?;
    let csr = read_limited(csr_path)?;
    let pki = Pki::new(dir);
    let signed = pki.sign_csr(&csr, cluster, days)?;
    let out = out.unwrap_or_else(|| PathBuf::from(format!("cluster-{cluster}.crt")));
    write_new_file(&out, &signed.der, 0o644)?;
    println!("Signed the certificate request for cluster {cluster:?}.");
    if let Some(info) = describe(&signed.der)?.first() {
        print_info(info);
    }
    println!("Wrote {} (DER).", shown(&out));
    println!();
    println!("Next steps:");
    println!(
        "  1. Copy {} to the node where the request was made and run there:",
        shown(&out)
    );
    println!(
        "       corosync-qdevice-net-certutil -M -c {}",
        file_name(&out)
    );
    println!("     This writes {NODE_NSSDB}/{P12_FILE}.");
    println!(
        "  2. Copy {P12_FILE} and {} to every other node and run there:",
        Pki::CA_EXPORT
    );
    println!(
        "       corosync-qdevice-net-certutil -i -c {}",
        Pki::CA_EXPORT
    );
    println!("       corosync-qdevice-net-certutil -m -c {P12_FILE}");
    Ok(ExitCode::SUCCESS)
}

fn client(
    dir: &Path,
    cluster: &str,
    out: Option<PathBuf>,
    days: u32,
) -> Result<ExitCode, CertError> {
    qnetd_certs::validate_cluster_name(cluster)?;
    let pki = Pki::new(dir);
    let out_dir = out.unwrap_or_else(|| PathBuf::from("."));
    let ca_export = read_limited(&pki.path(Pki::CA_EXPORT))?;
    let bundle = pki.issue_client(cluster, days)?;

    let files: [(String, &[u8], u32); 5] = [
        (Pki::CA_EXPORT.to_owned(), &ca_export[..], 0o644),
        (P12_FILE.to_owned(), &bundle.p12, 0o600),
        (format!("cluster-{cluster}.crt"), &bundle.cert_der, 0o644),
        (
            format!("cluster-{cluster}.pem"),
            bundle.cert_pem.as_bytes(),
            0o644,
        ),
        (
            format!("cluster-{cluster}-key.pem"),
            bundle.key_pem.as_bytes(),
            0o600,
        ),
    ];
    // Refuse before writing anything if an output exists.
    for (name, _, _) in &files {
        let path = out_dir.join(name);
        if path.symlink_metadata().is_ok() {
            return Err(CertError::OutputExists { path });
        }
    }
    if !out_dir.is_dir() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&out_dir)
            .map_err(|source| CertError::Io {
                path: out_dir.clone(),
                action: "create directory",
                source,
            })?;
    }
    println!("Issued a client certificate for cluster {cluster:?}.");
    if let Some(info) = describe(&bundle.cert_der)?.first() {
        print_info(info);
    }
    println!("Wrote:");
    for (name, data, mode) in &files {
        let path = out_dir.join(name);
        write_new_file(&path, data, *mode)?;
        println!("  {}", shown(&path));
    }
    println!();
    println!(
        "{P12_FILE} and cluster-{cluster}-key.pem hold the private key (empty password): \
         copy them securely and delete the copies you do not need."
    );
    println!(
        "On every cluster node, copy {} and {P12_FILE} there and run:",
        Pki::CA_EXPORT
    );
    println!("  corosync-qdevice-net-certutil -i -c {}", Pki::CA_EXPORT);
    println!("  corosync-qdevice-net-certutil -m -c {P12_FILE}");
    println!("(if the node already has {NODE_NSSDB}, move it away first).");
    Ok(ExitCode::SUCCESS)
}

fn show(dir: &Path, files: &[PathBuf]) -> Result<ExitCode, CertError> {
    let pki = Pki::new(dir);
    let paths: Vec<PathBuf> = if files.is_empty() {
        [Pki::CA_CERT, Pki::SERVER_CERT]
            .iter()
            .map(|f| pki.path(f))
            .collect()
    } else {
        files.to_vec()
    };
    let mut code = ExitCode::SUCCESS;
    for path in &paths {
        println!("{}:", path.display());
        let infos = match read_limited(path).and_then(|data| describe(&data)) {
            Ok(infos) => infos,
            Err(e) => {
                eprintln!("qnetd certs: error: {e}");
                code = ExitCode::FAILURE;
                continue;
            }
        };
        for info in &infos {
            print_info(info);
            let left = info.days_left();
            if left < 0 {
                eprintln!(
                    "qnetd certs: warning: {} ({}) EXPIRED {} days ago",
                    path.display(),
                    info.subject,
                    -left
                );
            } else if left < WARN_DAYS {
                eprintln!(
                    "qnetd certs: warning: {} ({}) expires in {left} days",
                    path.display(),
                    info.subject
                );
            }
        }
    }
    if files.is_empty() {
        for key in [Pki::CA_KEY, Pki::SERVER_KEY] {
            check_key_mode(&pki.path(key));
        }
    }
    Ok(code)
}

/// Warn if a private key file is readable by group or others.
fn check_key_mode(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    match fs::metadata(path) {
        Ok(meta) if meta.permissions().mode() & 0o077 != 0 => eprintln!(
            "qnetd certs: warning: {} has mode {:04o}; run `chmod 600 {}`",
            path.display(),
            meta.permissions().mode() & 0o7777,
            path.display()
        ),
        Ok(_) => {}
        Err(e) => eprintln!("qnetd certs: warning: cannot stat {}: {e}", path.display()),
    }
}

fn print_info(info: &CertInfo) {
    let left = info.days_left();
    let state = if left < 0 {
        "EXPIRED".to_owned()
    } else {
        format!("{left} days left")
    };
    println!(
        "  subject:     {}{}",
        info.subject,
        if info.is_ca { " (CA)" } else { "" }
    );
    println!("  issuer:      {}", info.issuer);
    if !info.dns_names.is_empty() {
        println!("  DNS names:   {}", info.dns_names.join(", "));
    }
    println!("  key:         {}", info.key_type);
    println!("  serial:      {}", info.serial);
    println!("  not before:  {}", info.not_before_rfc3339);
    println!("  not after:   {} ({state})", info.not_after_rfc3339);
    println!("  SHA-256:     {}", info.sha256_fingerprint);
}

/// Read a small input file, refusing anything implausibly large.
fn read_limited(path: &Path) -> Result<Vec<u8>, CertError> {
    let io_err = |action, source| CertError::Io {
        path: path.to_path_buf(),
        action,
        source,
    };
    let file = fs::File::open(path).map_err(|e| io_err("open", e))?;
    let mut data = Vec::new();
    file.take(MAX_INPUT + 1)
        .read_to_end(&mut data)
        .map_err(|e| io_err("read", e))?;
    if data.len() as u64 > MAX_INPUT {
        return Err(CertError::Parse {
            what: path.display().to_string(),
            detail: "file larger than 1 MiB, not a certificate or request".into(),
        });
    }
    Ok(data)
}

/// The path as given, or made absolute for clarity when relative.
fn shown(path: &Path) -> String {
    if path.is_absolute() {
        return path.display().to_string();
    }
    match std::env::current_dir() {
        Ok(cwd) => cwd.join(path).display().to_string(),
        Err(_) => path.display().to_string(),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
