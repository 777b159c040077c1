//! Server configuration: the settings of `corosync-qnetd` (its command-line
//! options and its `-S key=value` advanced settings, with the same names,
//! ranges and defaults) plus the TOML configuration file that holds the same
//! keys. Precedence: built-in defaults, then the file, then the command line.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub(crate) mod error;
pub(crate) mod values;
pub use crate::ha_settings::{FloatingSpec, HaSettings, Takeover};

/// TLS mode (`-s`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// TLS not offered.
    Off,
    /// TLS offered, the client chooses.
    On,
    /// TLS mandatory.
    Required,
}

impl TlsMode {
    pub fn parse(s: &str) -> Result<TlsMode, SettingError> {
        match s.to_ascii_lowercase().as_str() {
            "off" | "no" | "0" => Ok(TlsMode::Off),
            "on" | "yes" | "1" => Ok(TlsMode::On),
            "req" | "required" => Ok(TlsMode::Required),
            _ => Err(SettingError::TlsMode { value: s.into() }),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            TlsMode::Off => "off",
            TlsMode::On => "on",
            TlsMode::Required => "required",
        }
    }
}

/// Address family restriction (`-4` / `-6`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressFamily {
    Any,
    Ipv4,
    Ipv6,
}

/// Every server setting.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// `-l`: listen address; `None` = the wildcard address.
    pub listen_address: Option<String>,
    /// `-p`
    pub port: u16,
    /// `-4` / `-6`
    pub address_family: AddressFamily,
    /// `-s`
    pub tls: TlsMode,
    /// `-c`
    pub client_cert_required: bool,
    /// `-m`: 0 = unlimited.
    pub max_clients: usize,
    /// `-d` count (1 debug, 2 trace).
    pub debug: u8,

    // Advanced settings (`-S key=value`), names as in corosync-qnetd.
    pub listen_backlog: u32,
    pub max_client_send_buffers: usize,
    pub max_client_send_size: usize,
    pub max_client_receive_size: usize,
    pub nss_db_dir: PathBuf,
    pub cert_nickname: String,
    pub heartbeat_interval_min: u32,
    pub heartbeat_interval_max: u32,
    pub dpd_enabled: bool,
    pub dpd_interval_coefficient: f64,
    pub lock_file: PathBuf,
    pub local_socket_file: PathBuf,
    pub local_socket_backlog: u32,
    /// Permission bits removed from the admin socket (octal; default 077:
    /// only root may connect).
    pub local_socket_umask: u32,
    /// Group given to the admin socket, if any.
    pub local_socket_gid: Option<u32>,
    /// Where /metrics is served; `None` = off.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Whether the admin socket is created at all (qnetd's own; tests and
    /// benchmarks may turn it off).
    pub admin_socket: bool,
    pub ipc_max_clients: usize,
    pub ipc_max_receive_size: usize,
    pub ipc_max_send_size: usize,
    pub keep_active_partition_tie_breaker: bool,
    /// Directory with the PEM CA, server certificate and keys (qnetd's own
    /// setting; the reference uses an NSS database instead).
    pub tls_dir: PathBuf,
    /// How long a client may take for the TLS handshake after STARTTLS (ms).
    pub tls_handshake_timeout: u32,
    /// Pre-INIT deadline (ms): a connection that has not completed INIT
    /// (PREINIT, STARTTLS and handshake included) within it is closed.
    pub init_timeout: u32,
    /// Most simultaneous connections from one source address; 0 = no limit.
    pub max_clients_per_address: usize,
    /// Directory of the decision snapshot that survives restarts; `None`
    /// disables it.
    pub state_dir: Option<PathBuf>,
    /// After a restart, how long (ms) a cluster's vote is held for the
    /// partition that held it before the restart, while none of that
    /// partition's nodes has reconnected. 0 = no hold.
    pub restart_vote_hold: u32,
    /// Snapshot entries older than this (s) are ignored at start.
    pub state_max_age: u32,
    /// High availability (`[ha]`, `--ha`, `-S ha.KEY=VALUE`); off unless
    /// its endpoints are set.
    pub ha: HaSettings,
}

/// Where the decision snapshot lives by default.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/qnetd";

/// Where the server's CA, certificate and key live by default.
pub const DEFAULT_TLS_DIR: &str = "/etc/qnetd/tls";

/// The default TCP port of qnetd.
pub const DEFAULT_PORT: u16 = 5403;
/// Heartbeat assumed before INIT, for dead-peer detection (ms).
pub const INITIAL_HEARTBEAT_MS: u32 = 120_000;
/// Largest timer interval the reference accepts (ms); a dead-peer interval
/// above it is refused with error 13.
pub const MAX_TIMER_MS: u64 = 18_000_000;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen_address: None,
            port: DEFAULT_PORT,
            address_family: AddressFamily::Any,
            tls: TlsMode::On,
            client_cert_required: true,
            max_clients: 0,
            debug: 0,
            listen_backlog: 4096,
            max_client_send_buffers: 32,
            max_client_send_size: 32768,
            max_client_receive_size: 32768,
            nss_db_dir: PathBuf::from("/etc/corosync/qnetd/nssdb"),
            cert_nickname: "QNetd Cert".to_string(),
            heartbeat_interval_min: 1000,
            heartbeat_interval_max: 120_000,
            dpd_enabled: true,
            dpd_interval_coefficient: 1.5,
            lock_file: PathBuf::from("/var/run/corosync-qnetd/corosync-qnetd.pid"),
            local_socket_file: PathBuf::from("/var/run/corosync-qnetd/corosync-qnetd.sock"),
            local_socket_backlog: 10,
            local_socket_umask: 0o077,
            local_socket_gid: None,
            admin_socket: true,
            metrics_listen: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 9403))),
            ipc_max_clients: 10,
            ipc_max_receive_size: 4096,
            ipc_max_send_size: 10_485_760,
            keep_active_partition_tie_breaker: false,
            tls_dir: PathBuf::from(DEFAULT_TLS_DIR),
            tls_handshake_timeout: 10_000,
            init_timeout: 5_000,
            max_clients_per_address: 256,
            state_dir: Some(PathBuf::from(DEFAULT_STATE_DIR)),
            restart_vote_hold: 30_000,
            state_max_age: 86_400,
            ha: HaSettings::default(),
        }
    }
}

pub use error::{SettingError, SettingWarning};
pub use values::parse_bool;

fn parse_int<T>(key: &str, value: &str, min: u64, max: u64) -> Result<T, SettingError>
where
    T: TryFrom<u64>,
{
    let v: u64 = value.trim().parse().map_err(|_| SettingError::NotANumber {
        key: key.into(),
        value: value.into(),
        min,
        max,
    })?;
    let out_of_range = || SettingError::OutOfRange {
        key: key.into(),
        value: v as f64,
        min,
        max,
    };
    if v < min || v > max {
        return Err(out_of_range());
    }
    T::try_from(v).map_err(|_| out_of_range())
}

fn parse_flag(key: &str, value: &str) -> Result<bool, SettingError> {
    parse_bool(value).ok_or_else(|| SettingError::NotABoolean {
        key: key.into(),
        value: value.into(),
    })
}

fn non_empty(key: &str, value: &str) -> Result<String, SettingError> {
    if value.is_empty() {
        Err(SettingError::Empty { key: key.into() })
    } else {
        Ok(value.to_string())
    }
}

const INT_MAX: u64 = i32::MAX as u64;

impl Settings {
    /// Applies one advanced setting (`-S key=value`). Keys are matched
    /// case-insensitively. Returns a warning for deprecated keys that have no
    /// effect; unknown keys and bad values are errors.
    pub fn set_advanced(
        &mut self,
        key: &str,
        value: &str,
    ) -> Result<Option<SettingWarning>, SettingError> {
        let k = key.trim().to_ascii_lowercase();
        let value = value.trim();
        match k.as_str() {
            "listen_backlog" => self.listen_backlog = parse_int(&k, value, 1, INT_MAX)?,
            "max_client_send_buffers" => {
                self.max_client_send_buffers = parse_int(&k, value, 2, INT_MAX)?
            }
            "max_client_send_size" => {
                self.max_client_send_size = parse_int(&k, value, 16, INT_MAX)?
            }
            "max_client_receive_size" => {
                self.max_client_receive_size = parse_int(&k, value, 16, INT_MAX)?
            }
            // The reference's key store; here the folder of the PEM files.
            "nss_db_dir" => {
                self.nss_db_dir = PathBuf::from(non_empty(&k, value)?);
                self.tls_dir = self.nss_db_dir.clone();
            }
            "cert_nickname" => self.cert_nickname = non_empty(&k, value)?,
            "heartbeat_interval_min" => {
                self.heartbeat_interval_min = parse_int(&k, value, 1, u64::from(u32::MAX))?
            }
            "heartbeat_interval_max" => {
                self.heartbeat_interval_max = parse_int(&k, value, 1, u64::from(u32::MAX))?
            }
            "dpd_enabled" => self.dpd_enabled = parse_flag(&k, value)?,
            "dpd_interval" => {
                return Ok(Some(SettingWarning::Deprecated {
                    key: "dpd_interval",
                    instead: "dpd_interval_coefficient",
                }))
            }
            "dpd_interval_coefficient" => {
                let v: f64 = value.parse().map_err(|_| SettingError::NotANumber {
                    key: k.clone(),
                    value: value.into(),
                    min: 1,
                    max: 1000,
                })?;
                if !(1.0..=1000.0).contains(&v) {
                    return Err(SettingError::OutOfRange {
                        key: k,
                        value: v,
                        min: 1,
                        max: 1000,
                    });
                }
                self.dpd_interval_coefficient = v;
            }
            "lock_file" => self.lock_file = PathBuf::from(non_empty(&k, value)?),
            "local_socket_file" => self.local_socket_file = PathBuf::from(non_empty(&k, value)?),
            "local_socket_backlog" => self.local_socket_backlog = parse_int(&k, value, 1, INT_MAX)?,
            "local_socket_umask" => {
                self.local_socket_umask = u32::from_str_radix(value.trim_start_matches("0o"), 8)
                    .ok()
                    .filter(|v| *v <= 0o777)
                    .ok_or_else(|| SettingError::NotAMask {
                        key: k.clone(),
                        value: value.into(),
                    })?
            }
            "local_socket_gid" => {
                self.local_socket_gid = Some(parse_int(&k, value, 0, u64::from(u32::MAX))?)
            }
            "admin_socket" => self.admin_socket = parse_flag(&k, value)?,
            "metrics_listen" => self.metrics_listen = parse_metrics_listen(value)?,
            "ipc_max_clients" => self.ipc_max_clients = parse_int(&k, value, 0, INT_MAX)?,
            "ipc_max_receive_size" => {
                self.ipc_max_receive_size = parse_int(&k, value, 1024, INT_MAX)?
            }
            "ipc_max_send_size" => self.ipc_max_send_size = parse_int(&k, value, 1024, INT_MAX)?,
            "keep_active_partition_tie_breaker" => {
                self.keep_active_partition_tie_breaker = parse_flag(&k, value)?
            }
            "tls_dir" => self.tls_dir = PathBuf::from(non_empty(&k, value)?),
            "tls_handshake_timeout" => {
                self.tls_handshake_timeout = parse_int(&k, value, 100, 600_000)?
            }
            "init_timeout" => self.init_timeout = parse_int(&k, value, 100, 600_000)?,
            "max_clients_per_address" => {
                self.max_clients_per_address = parse_int(&k, value, 0, INT_MAX)?
            }
            "state_dir" => {
                self.state_dir = if value.is_empty() || value.eq_ignore_ascii_case("off") {
                    None
                } else {
                    Some(PathBuf::from(value))
                }
            }
            "restart_vote_hold" => self.restart_vote_hold = parse_int(&k, value, 0, 3_600_000)?,
            "state_max_age" => self.state_max_age = parse_int(&k, value, 1, 31_536_000)?,
            ha if ha.starts_with("ha.") => self.ha.set(&ha[3..], value)?,
            _ => return Err(SettingError::UnknownAdvanced { key: key.into() }),
        }
        Ok(None)
    }

    /// Applies a `-S` argument: one or more `key=value` pairs separated by
    /// commas.
    pub fn set_advanced_list(&mut self, arg: &str) -> Result<Vec<SettingWarning>, SettingError> {
        let mut warnings = Vec::new();
        for pair in arg.split(',').filter(|p| !p.trim().is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| SettingError::NotKeyValue { pair: pair.into() })?;
            if let Some(w) = self.set_advanced(k, v)? {
                warnings.push(w);
            }
        }
        Ok(warnings)
    }

    /// Checks relations between settings once everything is applied.
    pub fn validate(&self) -> Result<(), SettingError> {
        if self.heartbeat_interval_min > self.heartbeat_interval_max {
            return Err(SettingError::HeartbeatBounds {
                min: self.heartbeat_interval_min,
                max: self.heartbeat_interval_max,
            });
        }
        if self.max_client_receive_size < 32768 {
            // Allowed, as in the reference, but 3.0.x clients will refuse it.
        }
        if self.dpd_enabled && self.initial_dpd_ms() > MAX_TIMER_MS {
            return Err(SettingError::CoefficientTooLarge {
                coefficient: self.dpd_interval_coefficient,
            });
        }
        if let Some(addr) = &self.listen_address {
            if let Ok(ip) = addr.parse::<IpAddr>() {
                match (self.address_family, ip) {
                    (AddressFamily::Ipv4, IpAddr::V6(_)) => {
                        return Err(SettingError::FamilyMismatch {
                            address: addr.clone(),
                            ipv6: true,
                        })
                    }
                    (AddressFamily::Ipv6, IpAddr::V4(_)) => {
                        return Err(SettingError::FamilyMismatch {
                            address: addr.clone(),
                            ipv6: false,
                        })
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Dead-peer interval for a heartbeat, in ms (truncated like the
    /// reference).
    pub fn dpd_ms(&self, heartbeat_ms: u32) -> u64 {
        (self.dpd_interval_coefficient * f64::from(heartbeat_ms)) as u64
    }

    /// Dead-peer interval before INIT.
    pub fn initial_dpd_ms(&self) -> u64 {
        self.dpd_ms(INITIAL_HEARTBEAT_MS)
    }

    /// Applies a TOML configuration file's contents.
    pub fn apply_toml(
        &mut self,
        text: &str,
        origin: &Path,
    ) -> Result<Vec<SettingWarning>, SettingError> {
        self.apply_table(text).map_err(|e| SettingError::InFile {
            file: origin.to_path_buf(),
            error: Box::new(e),
        })
    }

    fn apply_table(&mut self, text: &str) -> Result<Vec<SettingWarning>, SettingError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| SettingError::Toml {
                detail: e.to_string(),
            })?;
        let mut warnings = Vec::new();
        for (key, value) in &table {
            let wrong = |expected: &'static str| SettingError::WrongType {
                key: key.clone(),
                expected,
            };
            let as_text = || scalar_text(value).ok_or_else(|| wrong("a string, number or boolean"));
            match key.as_str() {
                "listen_address" => {
                    let v = as_text()?;
                    self.listen_address = if v.is_empty() || v == "*" {
                        None
                    } else {
                        Some(v)
                    };
                }
                "port" => self.port = parse_port(&as_text()?)?,
                "address_family" => {
                    self.address_family = match as_text()?.as_str() {
                        "any" => AddressFamily::Any,
                        "ipv4" => AddressFamily::Ipv4,
                        "ipv6" => AddressFamily::Ipv6,
                        other => {
                            return Err(SettingError::AddressFamily {
                                value: other.into(),
                            })
                        }
                    }
                }
                "tls" => self.tls = TlsMode::parse(&as_text()?)?,
                "client_cert_required" => {
                    self.client_cert_required =
                        parse_bool(&as_text()?).ok_or_else(|| wrong("a boolean"))?
                }
                "max_clients" => {
                    self.max_clients = as_text()?.parse().map_err(|_| wrong("a whole number"))?
                }
                "debug" => {
                    self.debug = match value {
                        toml::Value::Boolean(b) => u8::from(*b),
                        toml::Value::Integer(i) => (*i).clamp(0, 2) as u8,
                        _ => return Err(wrong("a boolean or 0..2")),
                    }
                }
                "advanced" => {
                    let adv = value.as_table().ok_or_else(|| wrong("a table"))?;
                    for (k, v) in adv {
                        let text = scalar_text(v).ok_or_else(|| SettingError::WrongType {
                            key: format!("advanced.{k}"),
                            expected: "a scalar",
                        })?;
                        if let Some(w) = self.set_advanced(k, &text)? {
                            warnings.push(w);
                        }
                    }
                }
                "ha" => {
                    let t = value.as_table().ok_or_else(|| wrong("a table"))?;
                    self.ha.apply_toml(t)?;
                }
                other => return Err(SettingError::UnknownKey { key: other.into() }),
            }
        }
        Ok(warnings)
    }
}

fn scalar_text(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(if *b { "on" } else { "off" }.to_string()),
        _ => None,
    }
}

/// Parses `--metrics-listen`: `ADDR:PORT`, or `off`/empty to disable.
pub fn parse_metrics_listen(s: &str) -> Result<Option<std::net::SocketAddr>, SettingError> {
    let s = s.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("off") || s.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|_| SettingError::MetricsListen { value: s.into() })
}

/// Parses a TCP port, 1..=65535.
pub fn parse_port(s: &str) -> Result<u16, SettingError> {
    match s.trim().parse::<u16>() {
        Ok(0) | Err(_) => Err(SettingError::Port { value: s.into() }),
        Ok(p) => Ok(p),
    }
}

#[cfg(test)]
mod tests;
