//! Before a run: the check of its configuration and the client TLS
//! configurations (a certificate per cluster from the CA of `--tls-dir`).

use std::sync::Arc;

use rustls::ClientConfig;

use super::{Config, Workload};
use crate::bench::error::{BenchError, OptionsError};
use qnetd_core::wire::AlgorithmKind;

pub(super) fn check_config(cfg: &Config, w: Workload) -> Result<(), OptionsError> {
    if cfg.clusters == 0 {
        return Err(OptionsError::NoClusters);
    }
    if cfg.nodes == 0 || cfg.nodes > 255 {
        return Err(OptionsError::NodesOutOfRange);
    }
    if cfg.clusters.saturating_mul(cfg.nodes as usize) > 1_000_000 {
        return Err(OptionsError::TooManyClients);
    }
    if w == Workload::StormWhileLoaded && cfg.loaded_clusters == 0 {
        return Err(OptionsError::NoLoadedClusters);
    }
    if cfg.clusters > 254 * 256 * 255 {
        return Err(OptionsError::TooManyClustersToSpread);
    }
    if w == Workload::MassSplit {
        if cfg.nodes < 2 {
            return Err(OptionsError::SplitNeedsTwoNodes);
        }
        if cfg.algorithm != AlgorithmKind::Ffsplit {
            return Err(OptionsError::SplitNeedsFfsplit);
        }
    }
    if w == Workload::Reconnect && cfg.spawn.is_none() {
        return Err(OptionsError::ReconnectNeedsSpawn);
    }
    if !cfg.server.ip().is_loopback() {
        return Err(OptionsError::NotLoopback(cfg.server));
    }
    Ok(())
}

/// Client TLS configurations, one per cluster, with a certificate for the
/// cluster's name issued from the CA in `dir`.
pub(super) fn tls_configs(
    dir: &std::path::Path,
    names: &[Arc<str>],
) -> Result<Vec<Arc<ClientConfig>>, BenchError> {
    let pki = qnetd_certs::Pki::new(dir);
    let ca_path = pki.path(qnetd_certs::Pki::CA_CERT);
    let ca = std::fs::read(&ca_path).map_err(|source| BenchError::CaCertificate {
        path: ca_path.clone(),
        source,
    })?;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8);
    let chunk = names.len().div_ceil(threads).max(1);
    let results: Vec<Result<Vec<Arc<ClientConfig>>, BenchError>> = std::thread::scope(|s| {
        let handles: Vec<_> = names
            .chunks(chunk)
            .map(|part| {
                let pki = &pki;
                let ca = &ca;
                s.spawn(move || {
                    part.iter()
                        .map(|name| {
                            let b = pki.issue_client(name, 2).map_err(|source| {
                                BenchError::ClientCertificate {
                                    cluster: name.to_string(),
                                    source,
                                }
                            })?;
                            let cfg = crate::client::tls_client_config(
                                ca,
                                Some((b.cert_pem.as_bytes(), b.key_pem.as_bytes())),
                            )
                            .map_err(|source| {
                                BenchError::ClientTls {
                                    cluster: name.to_string(),
                                    source,
                                }
                            })?;
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
                    .unwrap_or(Err(BenchError::CertificateThreadPanicked))
            })
            .collect()
    });
    let mut all = Vec::with_capacity(names.len());
    for r in results {
        all.extend(r?);
    }
    Ok(all)
}
