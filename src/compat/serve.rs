//! `corosync-qnetd`: the server started under the stock name, with the
//! stock options (`-46dfhv -l ADDR -p PORT -s on|off|req -c on|off -m N
//! -S key=value`), as systemd units, the OCF agent and SysV scripts start
//! it. Differences from `qnetd serve`:
//!
//! * without `-f` it detaches once the port is open, and its exit status
//!   still says whether the start worked (see `daemon.rs`);
//! * the settings file ([`super::SETTINGS_FILE`]) is read when present, and
//!   the TLS material is in the stock folder (`nss_db_dir`) unless the file
//!   says otherwise;
//! * it never creates a CA: with TLS on and no key material it stops
//!   (exit 5) and says how to create or import it.
//!
//! `-h` prints the usage and `-v` the version, both exiting with 1 as the
//! stock program does.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use qnetd_certs::nss;
use qnetd_core::config::{Settings, TlsMode};

use super::getopt::{self, Opt, Style};

fn usage() {
    println!("usage: corosync-qnetd [-46dfhv] [-l listen_addr] [-p listen_port] [-s tls]");
    println!("              [-c client_cert_required] [-m max_clients] [-S option=value[,option2=value2,...]]");
}

/// Runs `corosync-qnetd` with `argv` (including `argv[0]`).
pub fn run(argv: &[OsString]) -> ExitCode {
    let (opts, _operands) = getopt::parse(
        argv.get(1..).unwrap_or(&[]),
        "46dfhvc:l:m:p:S:s:",
        Style::Permute,
    );
    let argv0 = argv
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The same options for `qnetd serve`, which parses and checks them.
    let mut serve_args: Vec<OsString> = vec!["corosync-qnetd".into(), "serve".into()];
    for opt in opts {
        match opt {
            Opt::Known('v', _) => {
                println!(
                    "qnetd {} (corosync-qnetd compatible quorum arbitrator)",
                    env!("CARGO_PKG_VERSION")
                );
                return ExitCode::from(1);
            }
            Opt::Known('h', _) => {
                usage();
                return ExitCode::from(1);
            }
            Opt::Known(c, value) => {
                serve_args.push(format!("-{c}").into());
                serve_args.extend(value);
            }
            Opt::Unknown(c) => {
                eprintln!("{argv0}: invalid option -- '{c}'");
                usage();
                return ExitCode::from(1);
            }
            Opt::MissingValue(c) => {
                eprintln!("{argv0}: option requires an argument -- '{c}'");
                usage();
                return ExitCode::from(1);
            }
        }
    }
    if let Some(file) = super::settings_file() {
        serve_args.push("--config".into());
        serve_args.push(file.into());
    }
    let cli = match crate::Cli::try_parse_from(serve_args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(2);
        }
    };
    let crate::Command::Serve(args) = cli.command else {
        return ExitCode::from(2);
    };
    crate::serve(
        args,
        crate::ServeMode {
            prog: "corosync-qnetd",
            base: super::base_settings(),
            daemon_unless_foreground: true,
            tls_check: Some(check_tls_material),
        },
    )
}

/// Refuses to start with TLS on when the folder holds none of qnetd's key
/// files (qnetd would otherwise create a new CA there), and says what to do.
pub fn check_tls_material(s: &Settings) -> Result<(), String> {
    if s.tls == TlsMode::Off {
        return Ok(());
    }
    let dir = &s.tls_dir;
    for f in super::nssdir::KEY_FILES {
        match dir.join(f).symlink_metadata() {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(format!(
                    "cannot look into {}: {e} (the folder must be readable by the user \
                     running the server, group coroqnetd in the package)",
                    dir.display()
                ))
            }
        }
    }
    Err(missing_material(dir))
}

fn missing_material(dir: &Path) -> String {
    if nss::has_db(dir) {
        format!(
            "{d} holds an NSS certificate database but none of qnetd's PEM key files: if \
             corosync-qnetd made it, import its CA and server certificate with `qnetd certs \
             import-nss --nssdb {d} --dir {d}` (the qnetd package does this on install); \
             otherwise delete the folder and run `corosync-qnetd-certutil -i`; or start with -s off",
            d = dir.display()
        )
    } else {
        format!(
            "no TLS key material in {}: create it with `corosync-qnetd-certutil -i` (or \
             `pcs qdevice setup model net`), or start with -s off",
            dir.display()
        )
    }
}
