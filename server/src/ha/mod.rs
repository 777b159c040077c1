//! High availability: this instance as one member of an active/standby
//! group on etcd (docs/ha.md). The controller of `qnetd-ha` elects the
//! leader and publishes this instance's role; the task here follows it:
//!
//! - **Leader** (first time in a term): load every cluster's vote holder
//!   from etcd into the vote memory (the restart hold starts now), bind the
//!   client port (IP_FREEBIND, so it can be the floating address), take and
//!   announce the floating addresses, serve. `Arbiter::set_serve_until`
//!   follows every lease extension, so each ACK is checked against it, and
//!   every changed holder is written to etcd (conditioned on the term)
//!   before its ACK leaves (the memory's write-ahead).
//! - **Leaving Leader**, or reaching `serve_until` by our own timer: no
//!   more ACKs, stop accepting, close every client (`LeaseExpired`), drop
//!   the floating addresses.
//! - **Shutdown**: stop serving first, then resign, so the next leader
//!   starts at once.
//!
//! Standbys never listen on the client port.

mod follow;
mod memory;
pub mod shared;

use std::sync::Arc;
use std::time::Duration;

use qnetd_core::config::{HaSettings, Settings, Takeover};
use qnetd_ha::{
    EtcdConfig, FloatingAddress, Ha, HaConfig, HaError, HaHandle, Role, TakeoverPolicy, TlsFiles,
};
use tokio::sync::watch;
use tracing::{error, info, warn};

pub use follow::follow;
use follow::release_all;
pub use memory::MemoryBackend;
pub use qnetd_ha::{HaError as GroupError, LeaderTerm as Term, Role as GroupRole};
pub use shared::{Backend, HaShared};

use crate::ctx::ServerCtx;
use crate::error::StartError;
use crate::shutdown::Shutdown;

/// Everything the group needs, prepared at start.
pub struct HaSetup {
    pub config: HaConfig,
    pub floats: Vec<FloatingAddress>,
    pub shared: Arc<HaShared>,
}

/// The CA fingerprint an instance announces: SHA-256 of its CA
/// certificate (DER), or of the text `tls off` when TLS is off (instances
/// of one group must agree on both).
pub fn ca_fingerprint(settings: &Settings) -> Result<String, StartError> {
    use qnetd_core::config::TlsMode;
    if settings.tls == TlsMode::Off {
        return Ok(qnetd_ha::ca_fingerprint(b"tls off"));
    }
    let path = settings.tls_dir.join(qnetd_certs::Pki::CA_CERT);
    let pem = std::fs::read(&path).map_err(|e| StartError::Ha {
        problem: format!(
            "cannot read the CA certificate {} for the group's CA check: {e}",
            path.display()
        ),
        code: 5,
    })?;
    let der = openssl::x509::X509::from_pem(&pem)
        .and_then(|c| c.to_der())
        .map_err(|e| StartError::Ha {
            problem: format!("{} is not a PEM certificate: {e}", path.display()),
            code: 5,
        })?;
    Ok(qnetd_ha::ca_fingerprint(&der))
}

/// This host's name (the default instance name).
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into our buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "qnetd".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name: String = String::from_utf8_lossy(&buf[..end])
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if name.is_empty() {
        "qnetd".into()
    } else {
        name
    }
}

fn config_error(problem: impl Into<String>) -> StartError {
    StartError::Ha {
        problem: problem.into(),
        code: 2,
    }
}

/// Builds the controller's configuration from the settings (reads the
/// password file and the CA certificate).
pub fn prepare(settings: &Settings) -> Result<HaSetup, StartError> {
    let h: &HaSettings = &settings.ha;
    let name = if h.name.is_empty() {
        host_name()
    } else {
        h.name.clone()
    };
    let password = match &h.password_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| {
                    config_error(format!(
                        "cannot read [ha] password_file {}: {e}",
                        p.display()
                    ))
                })?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
        ),
        None => h.password.clone(),
    };
    let etcd = EtcdConfig {
        endpoints: h.endpoints.clone(),
        tls: TlsFiles {
            ca: h.tls_ca.clone(),
            cert: h.tls_cert.clone(),
            key: h.tls_key.clone(),
        },
        user: h.user.clone(),
        password,
        request_timeout: Duration::from_millis(u64::from(h.request_timeout_ms)),
    };
    let mut config = HaConfig::new(etcd, &h.group, &name, &ca_fingerprint(settings)?);
    config.lease_ttl = Duration::from_secs(u64::from(h.lease_ttl_s));
    config.margin = Duration::from_millis(u64::from(h.margin_ms));
    config.keepalive_interval = Duration::from_millis(u64::from(h.keepalive_interval_ms));
    config.poll_interval = Duration::from_millis(u64::from(h.poll_interval_ms));
    config.takeover = match h.takeover {
        Takeover::WaitPreviousTtl => TakeoverPolicy::WaitPreviousTtl,
        Takeover::TrustExpiry => TakeoverPolicy::TrustExpiry,
    };
    config.validate().map_err(|e| config_error(e.to_string()))?;
    let floats = h
        .floating
        .iter()
        .map(|f| FloatingAddress {
            addr: f.addr,
            prefix_len: f.prefix_len,
            dev: f.dev.clone(),
        })
        .collect();
    let shared = Arc::new(HaShared::new(
        &h.group,
        &name,
        h.endpoints.clone(),
        h.floating.iter().map(|f| f.to_string()).collect(),
    ));
    Ok(HaSetup {
        config,
        floats,
        shared,
    })
}

/// Whether an error of `Ha::start` means "etcd not reachable yet, try
/// again" rather than "this instance may not join".
fn retryable(e: &HaError) -> bool {
    e.is_unavailable() || matches!(e, HaError::Etcd { .. } | HaError::Gateway { .. })
}

/// The first contact with the group, at start: joins it (the CA check
/// included) when etcd answers; `Ok(None)` when etcd cannot be reached
/// now (the server starts and keeps trying); an error when this instance
/// may not join (other CA, bad credentials or TLS files).
pub async fn join_at_start(
    setup: &HaSetup,
) -> Result<Option<(HaHandle, watch::Receiver<Role>)>, StartError> {
    let bound = setup.config.etcd.request_timeout * 3 + Duration::from_millis(500);
    match tokio::time::timeout(bound, Ha::start(setup.config.clone())).await {
        Ok(Ok(x)) => Ok(Some(x)),
        Ok(Err(e)) if retryable(&e) => {
            warn!(group = %setup.config.group, "etcd cannot be reached at start: {e}; not serving, retrying in the background");
            Ok(None)
        }
        Ok(Err(e)) => Err(StartError::Ha {
            problem: e.to_string(),
            code: 7,
        }),
        Err(_) => {
            warn!(group = %setup.config.group, "etcd did not answer within {bound:?} at start; not serving, retrying in the background");
            Ok(None)
        }
    }
}

/// Runs the group membership until `shutdown`: joins the group if that
/// did not work at start, then follows the role. A refusal to join (other
/// CA) is recorded in the context and stops the server.
pub async fn run(
    ctx: Arc<ServerCtx>,
    setup: HaSetup,
    joined: Option<(HaHandle, watch::Receiver<Role>)>,
    shutdown: Shutdown,
) {
    // Leftovers of a previous run (killed while it held them) go first.
    release_all(&setup.floats).await;
    let (handle, roles) = match joined {
        Some(x) => x,
        None => loop {
            tokio::select! {
                _ = shutdown.triggered() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            match tokio::time::timeout(
                setup.config.etcd.request_timeout * 3,
                Ha::start(setup.config.clone()),
            )
            .await
            {
                Ok(Ok(x)) => {
                    info!(group = %setup.config.group, "joined the HA group");
                    break x;
                }
                Ok(Err(e)) if retryable(&e) => {
                    tracing::debug!("etcd still unreachable: {e}");
                }
                Ok(Err(e)) => {
                    error!("{e}");
                    ctx.set_fatal(7, e.to_string());
                    shutdown.trigger();
                    return;
                }
                Err(_) => {}
            }
        },
    };
    {
        let h = handle.clone();
        setup
            .shared
            .set_error_count(Box::new(move || h.etcd_errors()));
    }
    follow(ctx, roles, handle, setup.floats, setup.shared, shutdown).await;
}
