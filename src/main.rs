//! The `qnetd` command and its drop-in names: `qnetd serve` runs the
//! arbitrator (see `serve_cmd`), `qnetd certs` manages the TLS material,
//! `qnetd status` reads a running server; installed as `corosync-qnetd`,
//! `corosync-qnetd-tool` or `corosync-qnetd-certutil` the binary behaves as
//! that program (`compat`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod certs_bundle;
mod certs_cmd;
mod compat;
mod daemon;
mod serve_cmd;
mod status_cmd;

use serve_cmd::{serve, ServeArgs, ServeMode};

#[derive(Parser)]
#[command(
    name = "qnetd",
    version,
    about = "Quorum arbitrator for corosync clusters, wire-compatible with corosync-qnetd"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the arbitrator.
    Serve(ServeArgs),
    Certs(certs_cmd::CertsArgs),
    /// Show the running server's clusters, nodes, partitions and votes.
    Status(status_cmd::StatusArgs),
}

fn main() -> ExitCode {
    // Installed as corosync-qnetd, corosync-qnetd-tool or
    // corosync-qnetd-certutil, the binary behaves as that program.
    if let Some(code) = compat::dispatch() {
        return code;
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args, ServeMode::default()),
        Command::Certs(args) => certs_cmd::run(args),
        Command::Status(args) => status_cmd::run(args),
    }
}
