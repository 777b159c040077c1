//! `qnetd-bench`: the load generator (see [`qnetd_tools::bench`] and
//! BENCHMARKS.md).

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(name = "qnetd-bench", version)]
struct Cli {
    #[command(flatten)]
    bench: qnetd_tools::bench::BenchArgs,
}

fn main() -> ExitCode {
    qnetd_tools::bench::main(Cli::parse().bench)
}
