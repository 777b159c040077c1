//! `qnetd serve` (and the drop-in `corosync-qnetd`): builds the settings
//! (defaults, the TOML file, the command line), logging, the lock file,
//! optionally detaches (daemon mode), binds every listener through
//! qnetd-server, installs the signal handlers and runs until a signal or
//! the admin socket's `shutdown` fires the one shutdown token.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{ArgAction, Args, Parser};
use qnetd_core::config::{self, AddressFamily, SettingError, SettingWarning, Settings, TlsMode};
use qnetd_server::{Server, ServerCtx, Shutdown};
use tracing::{error, info, warn};

use crate::daemon;

/// `corosync-qnetd`'s command line: the options of `qnetd serve` alone.
#[derive(Parser)]
#[command(name = "corosync-qnetd", version)]
pub(crate) struct ServeCli {
    #[command(flatten)]
    pub args: ServeArgs,
}

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// TOML configuration file (same keys as the options below; see config/qnetd.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Stay in the foreground. `qnetd serve` always does; started as
    /// corosync-qnetd, the server detaches unless -f is given.
    #[arg(short = 'f', long)]
    foreground: bool,
    /// Debug logging (-dd for trace).
    #[arg(short = 'd', long, action = ArgAction::Count)]
    debug: u8,
    /// IPv4 only.
    #[arg(short = '4', conflicts_with = "ipv6")]
    ipv4: bool,
    /// IPv6 (the default wildcard "::" also accepts IPv4).
    #[arg(short = '6')]
    ipv6: bool,
    /// Listen address (default: all addresses).
    #[arg(short = 'l', long = "listen", value_name = "ADDR")]
    listen: Option<String>,
    /// TCP port.
    #[arg(short = 'p', long, value_name = "PORT", value_parser = port_arg)]
    port: Option<u16>,
    /// TLS: on (offered), off, or required (req).
    #[arg(short = 's', long = "tls", value_name = "on|off|required", value_parser = TlsMode::parse)]
    tls: Option<TlsMode>,
    /// Require a client certificate when TLS is used: on or off.
    #[arg(short = 'c', long = "client-cert", value_name = "on|off", value_parser = bool_arg)]
    client_cert: Option<bool>,
    /// Maximum number of simultaneous clients (0 = unlimited).
    #[arg(short = 'm', long = "max-clients", value_name = "N")]
    max_clients: Option<usize>,
    /// Prometheus /metrics address (ADDR:PORT), or "off" [default: 127.0.0.1:9403].
    #[arg(long = "metrics-listen", value_name = "ADDR:PORT|off")]
    metrics_listen: Option<String>,
    /// Advanced setting(s) key=value[,key=value...], as in corosync-qnetd -S.
    #[arg(short = 'S', value_name = "KEY=VALUE")]
    advanced: Vec<String>,
    /// High availability: one [ha] setting KEY=VALUE (repeatable; the
    /// value may hold commas, e.g. endpoints=https://a:2379,https://b:2379).
    /// Keys: endpoints, group, name, tls_ca, tls_cert, tls_key, user,
    /// password, password_file, lease_ttl, margin, takeover,
    /// floating_address, interface, request_timeout, keepalive_interval,
    /// poll_interval. See README "High availability".
    #[arg(long = "ha", value_name = "KEY=VALUE")]
    ha: Vec<String>,
}

fn port_arg(s: &str) -> Result<u16, SettingError> {
    config::parse_port(s)
}

fn bool_arg(s: &str) -> Result<bool, SettingError> {
    config::parse_bool(s).ok_or_else(|| SettingError::NotABoolean {
        key: "-c".into(),
        value: s.into(),
    })
}

/// Why the configuration could not be built.
#[derive(Debug)]
pub(crate) enum ConfigError {
    /// The `--config` file cannot be read.
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A setting is invalid.
    Setting(SettingError),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Read { path, error } => {
                write!(
                    f,
                    "cannot read configuration file {}: {error}",
                    path.display()
                )
            }
            ConfigError::Setting(e) => write!(f, "{e}"),
        }
    }
}

impl From<SettingError> for ConfigError {
    fn from(e: SettingError) -> Self {
        ConfigError::Setting(e)
    }
}

/// Builds the settings: `base` (the defaults), then the file, then the
/// command line.
fn settings_from(
    args: &ServeArgs,
    base: Settings,
) -> Result<(Settings, Vec<SettingWarning>), ConfigError> {
    let mut s = base;
    let mut warnings = Vec::new();
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.clone(),
            error,
        })?;
        warnings.extend(s.apply_toml(&text, path)?);
    }
    if args.ipv4 {
        s.address_family = AddressFamily::Ipv4;
    }
    if args.ipv6 {
        s.address_family = AddressFamily::Ipv6;
    }
    if let Some(l) = &args.listen {
        s.listen_address = Some(l.clone());
    }
    if let Some(p) = args.port {
        s.port = p;
    }
    if let Some(t) = args.tls {
        s.tls = t;
    }
    if let Some(c) = args.client_cert {
        s.client_cert_required = c;
    }
    if let Some(m) = args.max_clients {
        s.max_clients = m;
    }
    if args.debug > 0 {
        s.debug = args.debug;
    }
    if let Some(m) = &args.metrics_listen {
        s.metrics_listen = config::parse_metrics_listen(m)?;
    }
    for a in &args.advanced {
        warnings.extend(s.set_advanced_list(a)?);
    }
    for a in &args.ha {
        s.ha.set_pair(a)?;
    }
    s.ha.finish()?;
    s.validate()?;
    Ok((s, warnings))
}

/// Logs to stderr, or to syslog as `syslog_ident` (daemon mode).
fn init_logging(debug: u8, syslog_ident: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let default = match debug {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = std::env::var("QNETD_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    if let Some(ident) = syslog_ident {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .without_time()
            .with_writer(daemon::Syslog::new(ident))
            .with_target(false)
            .init();
        return;
    }
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

/// Why the lock file could not be taken.
#[derive(Debug)]
enum LockError {
    /// Its directory or the file cannot be created or opened.
    Open {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Another instance holds it.
    Held { path: PathBuf },
    /// fcntl or flock failed.
    Lock {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Open { path, error } => write!(
                f,
                "cannot open lock file {}: {error} (run as root, or choose another path with -S lock_file=PATH)",
                path.display()
            ),
            LockError::Held { path } => write!(
                f,
                "another instance is running (lock file {} is held); stop it first or use another -S lock_file",
                path.display()
            ),
            LockError::Lock { path, error } => write!(f, "cannot lock {}: {error}", path.display()),
        }
    }
}

/// Holds the lock file for the life of the process, so two instances (ours
/// or corosync-qnetd) cannot share a configuration; the file holds the pid.
fn take_lock(path: &Path) -> Result<File, LockError> {
    let open = |error| LockError::Open {
        path: path.to_path_buf(),
        error,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(open)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o640)
        .open(path)
        .map_err(open)?;
    // Both kinds of lock: fcntl, which corosync-qnetd takes on the same
    // file, and flock, which earlier qnetd versions took.
    let lock_failed = |error| LockError::Lock {
        path: path.to_path_buf(),
        error,
    };
    let held = match daemon::lock_pid_file(&f) {
        Ok(true) => match f.try_lock() {
            Ok(()) => false,
            Err(std::fs::TryLockError::WouldBlock) => true,
            Err(std::fs::TryLockError::Error(e)) => return Err(lock_failed(e)),
        },
        Ok(false) => true,
        Err(e) => return Err(lock_failed(e)),
    };
    if held {
        return Err(LockError::Held {
            path: path.to_path_buf(),
        });
    }
    f.set_len(0).ok();
    let _ = writeln!(f, "{}", std::process::id());
    Ok(f)
}

/// Tells systemd (Type=notify) that the server is ready, if it asked.
fn notify_ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sock = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(_) => return,
    };
    let path = PathBuf::from(path);
    let res = if let Some(name) = path.to_str().and_then(|p| p.strip_prefix('@')) {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .and_then(|addr| sock.send_to_addr(b"READY=1", &addr))
    } else {
        sock.send_to(b"READY=1", &path)
    };
    if let Err(e) = res {
        warn!("cannot notify systemd of readiness: {e}");
    }
}

/// Exit status when the configuration is invalid (also clap's usage errors).
const EXIT_CONFIG: u8 = 2;
/// Exit status when another instance holds the lock file.
const EXIT_LOCK: u8 = 3;
/// Exit status when the TLS material is missing or unusable (the server's
/// own start failures, listen 4, TLS 5, admin/metrics 6: see StartError).
const EXIT_TLS: u8 = 5;

/// A check of the settings before the start.
type SettingsCheck = fn(&Settings) -> Result<(), Box<dyn std::error::Error>>;

/// How [`serve`] runs: as `qnetd serve`, or as the drop-in `corosync-qnetd`
/// (see `compat`).
pub(crate) struct ServeMode {
    /// Program name for messages and syslog.
    pub(crate) prog: &'static str,
    /// The settings before the file and the command line apply.
    pub(crate) base: Settings,
    /// Detach unless `-f` was given (corosync-qnetd); `qnetd serve` always
    /// stays in the foreground.
    pub(crate) daemon_unless_foreground: bool,
    /// Checked before the lock is taken: a failure is a TLS start failure
    /// (exit 5). corosync-qnetd uses it to refuse starting without key
    /// material instead of creating a CA.
    pub(crate) tls_check: Option<SettingsCheck>,
}

impl Default for ServeMode {
    fn default() -> Self {
        ServeMode {
            prog: "qnetd",
            base: Settings::default(),
            daemon_unless_foreground: false,
            tls_check: None,
        }
    }
}

/// Where the outcome of the start goes: the log, and in daemon mode also
/// the parent process waiting to exit with it.
struct Start {
    pipe: Option<daemon::ReadyPipe>,
}

impl Start {
    fn fail(&mut self, code: u8, message: &str) -> ExitCode {
        error!("{message}");
        if let Some(pipe) = self.pipe.take() {
            pipe.failed(code, message);
        }
        ExitCode::from(code)
    }

    fn ready(&mut self) {
        notify_ready();
        if let Some(pipe) = self.pipe.take() {
            pipe.ready();
        }
    }
}

pub(crate) fn serve(args: ServeArgs, mode: ServeMode) -> ExitCode {
    let (settings, warnings) = match settings_from(&args, mode.base) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}: {e}", mode.prog);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let detach = mode.daemon_unless_foreground && !args.foreground;
    let mut start = Start { pipe: None };
    if detach {
        // Before any thread exists: the parent exits with the start status.
        match daemon::detach(mode.prog) {
            Ok(pipe) => start.pipe = Some(pipe),
            Err(e) => {
                eprintln!("{}: {e}", mode.prog);
                return ExitCode::from(1);
            }
        }
    }
    init_logging(settings.debug, detach.then_some(mode.prog));
    for w in warnings {
        warn!("{w}");
    }
    if let Some(check) = mode.tls_check {
        if let Err(e) = check(&settings) {
            return start.fail(EXIT_TLS, &e.to_string());
        }
    }
    let _lock = match take_lock(&settings.lock_file) {
        Ok(f) => f,
        Err(e) => return start.fail(EXIT_LOCK, &e.to_string()),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return start.fail(1, &format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(async move {
        // Handlers first: a SIGTERM right after READY=1 must drain, not kill.
        let shutdown = Shutdown::new();
        let signals = shutdown_on_signal(shutdown.clone());
        let server = match Server::bind(settings.clone()).await {
            Ok(s) => s,
            Err(e) => return start.fail(e.exit_code(), &e.to_string()),
        };
        let addr = server
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| {
                format!(
                    "{}:{} (only while leading)",
                    settings.listen_address.as_deref().unwrap_or("*"),
                    settings.port
                )
            });
        if let Some(ha) = &server.ctx().ha {
            info!(
                group = %ha.group,
                name = %ha.name,
                endpoints = %ha.endpoints.join(","),
                "high availability: member of an active/standby group; the client port is open only while this instance leads"
            );
        }
        info!(
            listen = %addr,
            tls = settings.tls.label(),
            client_cert_required = settings.client_cert_required,
            max_clients = server.ctx().effective_max_clients,
            max_clients_per_address = settings.max_clients_per_address,
            metrics = %server.ctx().metrics_addr.map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
            version = env!("CARGO_PKG_VERSION"),
            "qnetd listening"
        );
        if let Some(tls) = &server.ctx().tls {
            info!(dir = %tls.dir().display(), "TLS certificates loaded");
            for w in tls.expiry_warnings() {
                warn!("{w}");
            }
        }
        tokio::spawn(signals);
        tokio::spawn(reload_on_sighup(server.ctx()));
        start.ready();
        let ctx = server.ctx();
        server.run(shutdown).await;
        if let Some((code, message)) = ctx.fatal() {
            error!("qnetd stopped: {message}");
            return ExitCode::from(code);
        }
        info!("qnetd stopped");
        ExitCode::SUCCESS
    })
}

/// Installs the SIGTERM/SIGINT handlers now and returns the future that
/// triggers `shutdown` when one of them arrives.
fn shutdown_on_signal(shutdown: Shutdown) -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            error!("cannot install signal handlers; SIGTERM will kill the process without a clean shutdown");
            std::future::pending::<()>().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received"),
            _ = int.recv() => info!("SIGINT received"),
        }
        shutdown.trigger();
    }
}

/// Rereads the TLS certificates on SIGHUP; connected clients stay. The
/// handler is installed before this returns (SIGHUP's default would kill).
fn reload_on_sighup(ctx: Arc<ServerCtx>) -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let handler = signal(SignalKind::hangup());
    async move {
        let Ok(mut hup) = handler else {
            warn!("cannot install the SIGHUP handler; certificates reload only on restart");
            return;
        };
        reload_loop(&ctx, &mut hup).await;
    }
}

async fn reload_loop(ctx: &ServerCtx, hup: &mut tokio::signal::unix::Signal) {
    while hup.recv().await.is_some() {
        match &ctx.tls {
            None => info!("SIGHUP: TLS is off (-s off), nothing to reload"),
            Some(tls) => match tls.reload() {
                Ok(()) => {
                    info!(dir = %tls.dir().display(), "SIGHUP: TLS certificates reloaded; new handshakes use them");
                    for w in tls.expiry_warnings() {
                        warn!("{w}");
                    }
                }
                Err(e) => error!("SIGHUP: keeping the previous TLS certificates: {e}"),
            },
        }
    }
}
