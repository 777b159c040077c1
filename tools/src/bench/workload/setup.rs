//! Before a run: the check of its configuration and the client TLS
//! configurations (a certificate per cluster from the CA of `--tls-dir`).

use std::sync::Arc;

use rustls::ClientConfig;

use super::{Config, Workload};
use qnetd_core::wire::AlgorithmKind;

pub(super) fn check_config(cfg: &Config, w: Workload) -> Result<(), String> {
    if cfg.clusters == 0 {
        return Err("--clusters must be at least 1".into());
    }
    if cfg.nodes == 0 || cfg.nodes > 255 {
        return Err("--nodes must be between 1 and 255".into());
    }
    if cfg.clusters.saturating_mul(cfg.nodes as usize) > 1_000_000 {
        return Err("at most 1,000,000 clients (clusters x nodes) per run".into());
    }
    if w == Workload::StormWhileLoaded && cfg.loaded_clusters == 0 {
        return Err("storm-while-loaded needs --loaded-clusters 1 or more".into());
    }
    if cfg.clusters > 254 * 256 * 255 {
        return Err("too many clusters for one source address each; use --spread off".into());
    }
    if w == Workload::MassSplit {
        if cfg.nodes < 2 {
            return Err(
                "mass-split needs --nodes 2 or more (a cluster of one cannot split)".into(),
            );
        }
        if cfg.algorithm != AlgorithmKind::Ffsplit {
            return Err(
                "mass-split checks the votes of ffsplit only; use --algorithm ffsplit".into(),
            );
        }
    }
    if w == Workload::Reconnect && cfg.spawn.is_none() {
        return Err(
            "reconnect restarts the server: give its command line with --spawn 'CMD' \
                    (and its address with --server)"
                .into(),
        );
    }
    if !cfg.server.ip().is_loopback() {
        return Err(format!(
            "--server {} is not a loopback address; the bench runs on loopback only",
            cfg.server
        ));
    }
    Ok(())
}

/// Client TLS configurations, one per cluster, with a certificate for the
/// cluster's name issued from the CA in `dir`.
pub(super) fn tls_configs(
    dir: &std::path::Path,
    names: &[Arc<str>],
) -> Result<Vec<Arc<ClientConfig>>, String> {
    let pki = qnetd_certs::Pki::new(dir);
    let ca_path = pki.path(qnetd_certs::Pki::CA_CERT);
    let ca = std::fs::read(&ca_path).map_err(|e| {
        format!(
            "cannot read the CA certificate {}: {e}; --tls-dir must hold a CA made by \
             `qnetd certs init --dir DIR`",
            ca_path.display()
        )
    })?;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8);
    let chunk = names.len().div_ceil(threads).max(1);
    let results: Vec<Result<Vec<Arc<ClientConfig>>, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = names
            .chunks(chunk)
            .map(|part| {
                let pki = &pki;
                let ca = &ca;
                s.spawn(move || {
                    part.iter()
                        .map(|name| {
                            let b = pki.issue_client(name, 2).map_err(|e| {
                                format!("cannot issue the client certificate of {name}: {e}")
                            })?;
                            let cfg = crate::client::tls_client_config(
                                ca,
                                Some((b.cert_pem.as_bytes(), b.key_pem.as_bytes())),
                            )
                            .map_err(|e| format!("TLS configuration of {name}: {e}"))?;
                            // Each qdevice is its own process: no session
                            // resumption between nodes.
                            let mut cfg = (*cfg).clone();
                            cfg.resumption = rustls::client::Resumption::disabled();
                            Ok(Arc::new(cfg))
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("certificate thread panicked".into()))
            })
            .collect()
    });
    let mut all = Vec::with_capacity(names.len());
    for r in results {
        all.extend(r?);
    }
    Ok(all)
}
