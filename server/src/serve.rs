//! The thin layer above every server task: binds every listener as the
//! settings say (client port, admin socket, /metrics), builds the shared
//! state, then runs each task with its listener and the one shutdown token.
//! The binary and the integration tests start the server through it.
//!
//! In a high-availability group (`[ha]`), the client port is not bound
//! here: the [`crate::ha`] task binds it while this instance leads, and
//! the vote memory lives in etcd instead of the state file.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use qnetd_core::arbiter::Arbiter;
use qnetd_core::config::{Settings, TlsMode};
use qnetd_core::memory::VoteMemory;
use qnetd_ha::{HaHandle, Role};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::ctx::ServerCtx;
use crate::error::StartError;
use crate::shutdown::Shutdown;
use crate::tls::TlsContext;
use crate::{admin, ha, listener, metrics, persist};

/// The group membership prepared at start (high availability).
struct HaStart {
    setup: ha::HaSetup,
    joined: Option<(HaHandle, watch::Receiver<Role>)>,
}

/// A bound, not yet running server.
pub struct Server {
    /// The client port (`None` in an HA group: bound while leading).
    client: Option<TcpListener>,
    ha: Option<HaStart>,
    admin: Option<UnixListener>,
    metrics: Option<TcpListener>,
    state_file: Option<std::path::PathBuf>,
    ctx: Arc<ServerCtx>,
}

impl Server {
    /// Loads the TLS material, reads the state file and binds every
    /// listener. The server clock starts now.
    pub async fn bind(settings: Settings) -> Result<Server, StartError> {
        let origin = Instant::now();
        let tls = match settings.tls {
            TlsMode::Off => None,
            TlsMode::On | TlsMode::Required => Some(
                TlsContext::load_or_init(&settings.tls_dir, settings.client_cert_required)
                    .map_err(StartError::Tls)?,
            ),
        };
        let ha_setup = if settings.ha.enabled() {
            Some(ha::prepare(&settings)?)
        } else {
            None
        };
        let client = match ha_setup {
            None => Some(listener::bind(&settings).await?),
            Some(_) => None,
        };
        let port = client
            .as_ref()
            .and_then(|c| c.local_addr().ok())
            .map_or(settings.port, |a| a.port());
        let admin = if settings.admin_socket {
            Some(
                admin::bind(
                    &settings.local_socket_file,
                    settings.local_socket_umask,
                    settings.local_socket_gid,
                )
                .await?,
            )
        } else {
            None
        };
        let metrics = match settings.metrics_listen {
            Some(addr) => {
                metrics::install();
                Some(metrics::bind(addr).await?)
            }
            None => None,
        };
        let metrics_addr = metrics.as_ref().and_then(|l| l.local_addr().ok());
        let effective_max_clients = listener::effective_max_clients(
            settings.max_clients,
            qnetd_core::sys::raise_nofile_limit(None),
        );
        let opened = match &ha_setup {
            None => persist::open(
                settings.state_dir.as_deref(),
                Duration::from_secs(u64::from(settings.state_max_age)),
                u64::from(settings.restart_vote_hold),
            ),
            Some(setup) => {
                // The group's vote memory is in etcd, loaded by each new
                // leader; an ACK for a changed holder waits until it is
                // stored there.
                let memory = VoteMemory::in_memory();
                memory.set_write_ahead(
                    true,
                    Some(format!("etcd /qnetd/{}/votes/", setup.config.group)),
                );
                info!(
                    group = %setup.config.group,
                    "high availability: the vote memory is kept in etcd (state_dir is not used)"
                );
                persist::Opened {
                    memory,
                    path: None,
                    problem: None,
                }
            }
        };
        let arbiter = Arc::new(Arbiter::new(
            Arc::new(settings),
            Arc::new(opened.memory),
            origin,
            persist::unix_ms(),
        ));
        let mut ctx = ServerCtx::new(arbiter, tls, port, metrics_addr, effective_max_clients);
        ctx.state_problem = opened.problem;
        let ha = match ha_setup {
            None => None,
            Some(setup) => {
                // No ACK before this instance leads.
                ctx.arbiter.set_serve_until(Some(origin));
                ctx = ctx.with_ha(Arc::clone(&setup.shared));
                let joined = ha::join_at_start(&setup).await?;
                Some(HaStart { setup, joined })
            }
        };
        Ok(Server {
            client,
            ha,
            admin,
            metrics,
            state_file: opened.path,
            ctx: Arc::new(ctx),
        })
    }

    /// The address of the client port (an error in an HA group, where it
    /// is bound only while this instance leads).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match &self.client {
            Some(c) => c.local_addr(),
            None => Err(std::io::Error::other(
                "in a high-availability group the client port is bound only while leading",
            )),
        }
    }

    /// The shared state (status, metrics, TLS reload).
    pub fn ctx(&self) -> Arc<ServerCtx> {
        Arc::clone(&self.ctx)
    }

    /// Serves until `shutdown` fires (a signal, or the admin socket's
    /// `shutdown` request), then disconnects every client, saves the state
    /// file a last time and returns.
    pub async fn run(self, shutdown: Shutdown) {
        let mut tasks = Vec::new();
        if let Some(l) = self.admin {
            tasks.push(tokio::spawn(admin::run(
                l,
                Arc::clone(&self.ctx),
                shutdown.clone(),
            )));
        }
        if let Some(l) = self.metrics {
            tasks.push(tokio::spawn(metrics::run(
                l,
                Arc::clone(&self.ctx),
                shutdown.clone(),
            )));
        }
        if let Some(path) = self.state_file {
            tasks.push(tokio::spawn(persist::run(
                Arc::clone(&self.ctx.arbiter),
                path,
                shutdown.clone(),
            )));
        }
        match (self.client, self.ha) {
            (Some(client), _) => {
                listener::run(client, Arc::clone(&self.ctx), shutdown.clone()).await
            }
            (None, Some(h)) => {
                ha::run(Arc::clone(&self.ctx), h.setup, h.joined, shutdown.clone()).await
            }
            (None, None) => shutdown.triggered().await,
        }
        // The client listener only returns once the token fired; the other
        // tasks finish their last step (the state file's final save).
        for t in tasks {
            if tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .is_err()
            {
                warn!("a server task did not stop within 5 s");
            }
        }
    }
}
