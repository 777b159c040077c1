//! Differential test: every scenario runs against the Debian `corosync-qnetd`
//! and against our server, driven by our protocol client, and the votes each
//! node receives are compared. Differences by design are declared in the
//! scenario, with the exact outcome of both sides.
//!
//! Not part of plain `cargo test` (it needs the Debian package):
//!
//! ```text
//! cargo test --test differential                 # all scenarios
//! cargo test --test differential -- NAME...      # some of them
//! cargo test --test differential -- --list
//! ```
//!
//! See tests/differential/README.md.

mod driver;
mod scenarios;
mod servers;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use driver::{NodeResult, Run};
use scenarios::Scenario;
use servers::{our_log, OurServer, RefServer};

/// Everything one server produced for one scenario.
struct Outcome {
    nodes: BTreeMap<u32, NodeResult>,
    /// "alive" or how it died, at the end of the scenario.
    server: String,
    /// Driver errors (a step that could not be performed).
    errors: Vec<String>,
    /// The server's log of this scenario.
    log: String,
}

async fn run_steps(sc: &Scenario, addr: std::net::SocketAddr) -> (Run, Vec<String>) {
    let mut run = Run::new(addr, sc.cluster.clone());
    let mut errors = Vec::new();
    for (i, step) in sc.steps.iter().enumerate() {
        if let Err(e) = run.step(step).await {
            errors.push(format!("step {} {:?}: {e}", i + 1, step));
        }
    }
    (run, errors)
}

async fn run_reference(sc: &Scenario, bin: &Path, dir: &Path) -> Result<Outcome, String> {
    let mut srv = RefServer::start(bin, &dir.join("reference"))?;
    let (run, errors) = run_steps(sc, srv.addr).await;
    let server = srv.state();
    let nodes = run.finish();
    srv.stop();
    let log = std::fs::read_to_string(&srv.log).unwrap_or_default();
    Ok(Outcome {
        nodes,
        server,
        errors,
        log,
    })
}

async fn run_ours(sc: &Scenario, dir: &Path) -> Result<Outcome, String> {
    let offset = our_log().len();
    let srv = OurServer::start(&dir.join("ours")).await?;
    let (run, errors) = run_steps(sc, srv.addr).await;
    let server = if srv.alive() { "alive" } else { "died" }.to_string();
    let nodes = run.finish();
    srv.stop().await;
    Ok(Outcome {
        nodes,
        server,
        errors,
        log: our_log().since(offset),
    })
}

/// Compares the two outcomes with the scenario's expectations; returns the
/// list of failures (empty = ok) and notes on expected differences.
fn check(sc: &Scenario, r: &Outcome, o: &Outcome) -> (Vec<String>, Vec<String>) {
    let mut fails = Vec::new();
    let mut notes = Vec::new();
    for (which, out) in [("reference", r), ("ours", o)] {
        for e in &out.errors {
            fails.push(format!("{which}: {e}"));
        }
    }
    let (want_ref, want_ours) = sc.server_end;
    if r.server != want_ref || o.server != want_ours {
        fails.push(format!(
            "server at the end: reference {} (expected {want_ref}), ours {} (expected {want_ours})",
            r.server, o.server
        ));
    }
    let ids: Vec<u32> = r.nodes.keys().chain(o.nodes.keys()).copied().collect();
    let ids: std::collections::BTreeSet<u32> = ids.into_iter().collect();
    let empty = NodeResult::default();
    for id in ids {
        let rn = r.nodes.get(&id).unwrap_or(&empty);
        let on = o.nodes.get(&id).unwrap_or(&empty);
        if let Some(d) = sc.differences.iter().find(|d| d.node == id) {
            let mut ok = true;
            if rn.trace() != d.reference.0 || rn.final_vote != d.reference.1 {
                ok = false;
                fails.push(format!(
                    "node {id}: reference differs from the declared outcome\n      declared: [{}] final {}\n      got:      [{}] final {}",
                    d.reference.0, d.reference.1, rn.trace(), rn.final_vote
                ));
            }
            if on.trace() != d.ours.0 || on.final_vote != d.ours.1 {
                ok = false;
                fails.push(format!(
                    "node {id}: ours differs from the declared outcome\n      declared: [{}] final {}\n      got:      [{}] final {}",
                    d.ours.0, d.ours.1, on.trace(), on.final_vote
                ));
            }
            if ok && rn.trace() == on.trace() && rn.final_vote == on.final_vote {
                fails.push(format!(
                    "node {id}: declared difference not observed (both servers gave the same)"
                ));
            } else if ok {
                notes.push(format!(
                    "node {id}: expected difference ({}): reference final {}, ours final {}",
                    d.reason, rn.final_vote, on.final_vote
                ));
            }
            continue;
        }
        if rn.trace() != on.trace() {
            fails.push(format!(
                "node {id}: vote sequences differ\n      reference: [{}]\n      ours:      [{}]",
                rn.verbose(),
                on.verbose()
            ));
        }
        match sc.expect.iter().find(|(n, _)| *n == id) {
            Some((_, want)) => {
                for (which, got) in [("reference", &rn.final_vote), ("ours", &on.final_vote)] {
                    if got != want {
                        fails.push(format!(
                            "node {id}: {which} final vote {got}, expected {want}"
                        ));
                    }
                }
            }
            None => fails.push(format!(
                "node {id}: the scenario declares no expected final vote (reference {}, ours {})",
                rn.final_vote, on.final_vote
            )),
        }
    }
    (fails, notes)
}

fn print_traces(r: &Outcome, o: &Outcome) {
    let ids: std::collections::BTreeSet<u32> =
        r.nodes.keys().chain(o.nodes.keys()).copied().collect();
    for id in ids {
        for (which, out) in [("reference", r), ("ours     ", o)] {
            if let Some(n) = out.nodes.get(&id) {
                println!(
                    "      node {id} {which}: final {:<9} [{}]",
                    n.final_vote,
                    n.verbose()
                );
            }
        }
    }
}

/// The lines of a log that tell about votes and decisions (last `n`).
fn log_excerpt(log: &str, n: usize) -> String {
    let keys = [
        "vote",
        "Vote",
        "ACK",
        "NACK",
        "partition",
        "algo",
        "Algo",
        "error",
        "Error",
        "disconnect",
        "tie",
        "Tie",
        "membership",
        "heuristics",
    ];
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| keys.iter().any(|k| l.contains(k)))
        .collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("        {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let all = scenarios::all();
    if args.iter().any(|a| a == "--list") {
        for sc in &all {
            println!("{:<34} {}", sc.name, sc.covers);
        }
        return;
    }
    let names: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    for n in &names {
        if !all.iter().any(|s| s.name == n.as_str()) {
            eprintln!("differential: unknown scenario '{n}' (see --list)");
            std::process::exit(2);
        }
    }
    let selected: Vec<&Scenario> = all
        .iter()
        .filter(|s| names.is_empty() || names.iter().any(|n| n.as_str() == s.name))
        .collect();

    let Some(bin) = servers::reference_binary() else {
        println!("FAIL: corosync-qnetd (the reference server) is not installed.");
        println!("      Install it with: apt-get install corosync-qnetd");
        println!("      (or point QNETD_REF_BIN at the binary)");
        println!("0 passed, {} failed", selected.len());
        std::process::exit(1);
    };
    let base: PathBuf = std::env::var_os("QNETD_DIFF_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("qnetd-diff-{}", std::process::id())));
    println!(
        "differential: {} scenario(s), reference {}, work dir {}",
        selected.len(),
        bin.display(),
        base.display()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let t0 = Instant::now();
    let (mut passed, mut failed) = (0, 0);
    for sc in selected {
        let t = Instant::now();
        let dir = base.join(sc.name);
        let result = rt.block_on(async {
            let sc2 = sc.clone();
            let bin2 = bin.clone();
            let dir2 = dir.clone();
            // A panic in one scenario fails it, not the whole run (the
            // reference is stopped by its Drop guard while unwinding).
            let r = tokio::spawn(async move {
                let r = run_reference(&sc2, &bin2, &dir2).await?;
                let o = run_ours(&sc2, &dir2).await?;
                Ok::<_, String>((r, o))
            })
            .await;
            match r {
                Ok(r) => r,
                Err(e) => Err(format!("scenario panicked: {e}")),
            }
        });
        let secs = t.elapsed().as_secs_f64();
        match result {
            Err(e) => {
                failed += 1;
                println!("FAIL {} ({secs:.1} s): {e}", sc.name);
            }
            Ok((r, o)) => {
                let (fails, notes) = check(sc, &r, &o);
                if fails.is_empty() {
                    passed += 1;
                    println!("ok   {} ({secs:.1} s)", sc.name);
                    for n in notes {
                        println!("      {n}");
                    }
                    if std::env::var_os("QNETD_DIFF_VERBOSE").is_some() {
                        print_traces(&r, &o);
                    }
                } else {
                    failed += 1;
                    println!("FAIL {} ({secs:.1} s): {}", sc.name, sc.covers);
                    for f in &fails {
                        println!("    - {f}");
                    }
                    println!("    traces (vi#N = VOTE_INFO with seq N):");
                    print_traces(&r, &o);
                    println!(
                        "    reference log (vote lines, {}):",
                        dir.join("reference").display()
                    );
                    println!("{}", log_excerpt(&r.log, 40));
                    println!("    our log (vote lines):");
                    println!("{}", log_excerpt(&o.log, 40));
                    let _ = std::fs::write(dir.join("ours.log"), &o.log);
                }
            }
        }
    }
    println!("differential: {:.1} s in total", t0.elapsed().as_secs_f64());
    if failed == 0 && std::env::var_os("QNETD_DIFF_DIR").is_none() {
        // Keep the logs only when something failed (or the dir was chosen).
        let _ = std::fs::remove_dir_all(&base);
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
