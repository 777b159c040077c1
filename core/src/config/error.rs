//! Why a setting was refused, and warnings about settings that are
//! accepted but have no effect.

use std::fmt;
use std::path::PathBuf;

use super::{INITIAL_HEARTBEAT_MS, MAX_TIMER_MS};

/// A setting that could not be applied; the message names the setting and
/// what it accepts.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub enum SettingError {
    /// A whole number was expected.
    NotANumber {
        key: String,
        value: String,
        min: u64,
        max: u64,
    },
    /// A number outside its range.
    OutOfRange {
        key: String,
        value: f64,
        min: u64,
        max: u64,
    },
    /// A boolean was expected.
    NotABoolean { key: String, value: String },
    /// The value may not be empty.
    Empty { key: String },
    /// Not an octal permission mask.
    NotAMask { key: String, value: String },
    /// A `-S` argument that is not `key=value`.
    NotKeyValue { pair: String },
    /// An advanced setting qnetd does not know.
    UnknownAdvanced { key: String },
    /// A key of the configuration file qnetd does not know.
    UnknownKey { key: String },
    /// A value of the wrong type in the configuration file.
    WrongType { key: String, expected: &'static str },
    /// The configuration file is not valid TOML.
    Toml { detail: String },
    /// An error in a configuration file.
    InFile {
        file: PathBuf,
        error: Box<SettingError>,
    },
    /// Not a TCP port.
    Port { value: String },
    /// Not a TLS mode.
    TlsMode { value: String },
    /// Not an address family.
    AddressFamily { value: String },
    /// Not `ADDR:PORT` or `off`.
    MetricsListen { value: String },
    /// heartbeat_interval_min > heartbeat_interval_max.
    HeartbeatBounds { min: u32, max: u32 },
    /// The coefficient makes the initial dead-peer interval exceed the
    /// timer limit.
    CoefficientTooLarge { coefficient: f64 },
    /// The listen address is of the family `-4`/`-6` excludes.
    FamilyMismatch { address: String, ipv6: bool },
    /// A high-availability setting (`[ha]`) is invalid.
    Ha { key: String, problem: String },
    /// A key of `[ha]` qnetd does not know; `known` lists the keys.
    HaUnknownKey {
        key: String,
        known: &'static [&'static str],
    },
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingError::NotANumber { key, value, min, max } => write!(
                f,
                "advanced setting {key}: '{value}' is not a number (allowed {min}..={max})"
            ),
            SettingError::OutOfRange { key, value, min, max } => write!(
                f,
                "advanced setting {key}: {value} is out of range (allowed {min}..={max})"
            ),
            SettingError::NotABoolean { key, value } => write!(
                f,
                "advanced setting {key}: '{value}' is not a boolean (use on/off, yes/no or 1/0)"
            ),
            SettingError::Empty { key } => write!(f, "advanced setting {key}: value is empty"),
            SettingError::NotAMask { key, value } => write!(
                f,
                "advanced setting {key}: '{value}' is not an octal mask (e.g. 077 or 007)"
            ),
            SettingError::NotKeyValue { pair } => {
                write!(f, "advanced setting '{pair}' is not of the form key=value")
            }
            SettingError::UnknownAdvanced { key } => write!(
                f,
                "unknown advanced setting '{key}' (see `qnetd serve --help` or config/qnetd.toml for the list)"
            ),
            SettingError::UnknownKey { key } => write!(
                f,
                "unknown key '{key}' (known: listen_address, port, address_family, tls, client_cert_required, max_clients, debug, [advanced], [ha])"
            ),
            SettingError::WrongType { key, expected } => write!(f, "{key}: expected {expected}"),
            SettingError::Toml { detail } => write!(f, "{detail}"),
            SettingError::InFile { file, error } => write!(f, "{}: {error}", file.display()),
            SettingError::Port { value } => {
                write!(f, "invalid port '{value}': use a number from 1 to 65535")
            }
            SettingError::TlsMode { value } => write!(
                f,
                "invalid TLS mode '{value}': use on, off or required (req)"
            ),
            SettingError::AddressFamily { value } => {
                write!(f, "address_family '{value}': use any, ipv4 or ipv6")
            }
            SettingError::MetricsListen { value } => write!(
                f,
                "metrics listen address '{value}' is not ADDR:PORT (e.g. 127.0.0.1:9403 or [::]:9403), or 'off'"
            ),
            SettingError::HeartbeatBounds { min, max } => write!(
                f,
                "heartbeat_interval_min ({min}) is larger than heartbeat_interval_max ({max})"
            ),
            SettingError::CoefficientTooLarge { coefficient } => write!(
                f,
                "dpd_interval_coefficient {coefficient} is too large: {coefficient} x {INITIAL_HEARTBEAT_MS} ms exceeds the timer limit of {MAX_TIMER_MS} ms"
            ),
            SettingError::FamilyMismatch { address, ipv6: true } => write!(
                f,
                "listen address {address} is IPv6 but -4 (IPv4 only) was given"
            ),
            SettingError::FamilyMismatch { address, ipv6: false } => write!(
                f,
                "listen address {address} is IPv4 but -6 (IPv6 only) was given"
            ),
            SettingError::Ha { key, problem } => write!(f, "[ha] {key}: {problem}"),
            SettingError::HaUnknownKey { key, known } => write!(
                f,
                "unknown [ha] key '{key}' (known: {})",
                known.join(", ")
            ),
        }
    }
}

impl std::error::Error for SettingError {}

/// A setting that was accepted but has no effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingWarning {
    /// A deprecated key; `instead` is what to use.
    Deprecated {
        key: &'static str,
        instead: &'static str,
    },
}

impl fmt::Display for SettingWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingWarning::Deprecated { key, instead } => write!(
                f,
                "advanced setting {key} is deprecated and has no effect; use {instead}"
            ),
        }
    }
}
