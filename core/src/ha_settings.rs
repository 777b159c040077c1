//! The `[ha]` settings: an active/standby group of qnetd instances on etcd
//! (docs/ha.md). Pure data and parsing; qnetd-server turns them into the
//! controller's configuration. Off unless `endpoints` is set: a single
//! qnetd with its local state file needs no etcd.
//!
//! The same keys come from the `[ha]` table of the configuration file,
//! from `--ha KEY=VALUE` and from `-S ha.KEY=VALUE` (in `-S`, whose pairs
//! are separated by commas, list several endpoints or addresses with `;`).

use std::net::IpAddr;
use std::path::PathBuf;

use crate::config::error::SettingError;
use crate::config::values::parse_bool;

/// How a new leader treats a previous leader whose lease vanished.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Takeover {
    /// Wait the previous leader's TTL after winning (safe against an early
    /// revoke of its lease).
    #[default]
    WaitPreviousTtl,
    /// Serve at once: only when nobody else can revoke or delete the keys.
    TrustExpiry,
}

impl Takeover {
    pub fn label(self) -> &'static str {
        match self {
            Takeover::WaitPreviousTtl => "wait-previous-ttl",
            Takeover::TrustExpiry => "trust-expiry",
        }
    }
}

/// One floating address: `ADDR/PREFIX` on an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FloatingSpec {
    pub addr: IpAddr,
    pub prefix_len: u8,
    pub dev: String,
}

impl std::fmt::Display for FloatingSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}@{}", self.addr, self.prefix_len, self.dev)
    }
}

/// Every `[ha]` setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HaSettings {
    /// etcd client URLs; empty = high availability off.
    pub endpoints: Vec<String>,
    /// The group's name: every instance of one group uses the same.
    pub group: String,
    /// This instance's name; empty = the host name.
    pub name: String,
    /// CA that signed etcd's certificate (https endpoints).
    pub tls_ca: Option<PathBuf>,
    /// Client certificate and key for etcd (when etcd requires one).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// etcd user (with auth enabled) and its password or password file.
    pub user: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Leader lease TTL, whole seconds.
    pub lease_ttl_s: u32,
    /// Safety margin subtracted from every lease deadline (ms).
    pub margin_ms: u32,
    pub takeover: Takeover,
    /// Addresses the leader adds and announces while it serves.
    pub floating: Vec<FloatingSpec>,
    /// Bound of each etcd request (ms).
    pub request_timeout_ms: u32,
    /// How often the leader refreshes its lease (ms).
    pub keepalive_interval_ms: u32,
    /// How often a standby reads the leader key (ms).
    pub poll_interval_ms: u32,
    /// Interface for floating addresses given without `@IFACE`.
    pub interface: Option<String>,
    /// Floating addresses as written, resolved against `interface` by
    /// [`HaSettings::finish`].
    floating_raw: Vec<String>,
}

impl Default for HaSettings {
    fn default() -> Self {
        HaSettings {
            endpoints: Vec::new(),
            group: "qnetd".into(),
            name: String::new(),
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            user: None,
            password: None,
            password_file: None,
            lease_ttl_s: 5,
            margin_ms: 1000,
            takeover: Takeover::WaitPreviousTtl,
            floating: Vec::new(),
            request_timeout_ms: 1000,
            keepalive_interval_ms: 1000,
            poll_interval_ms: 250,
            interface: None,
            floating_raw: Vec::new(),
        }
    }
}

/// The keys of `[ha]`.
pub const HA_KEYS: &[&str] = &[
    "endpoints",
    "group",
    "name",
    "tls_ca",
    "tls_cert",
    "tls_key",
    "user",
    "password",
    "password_file",
    "lease_ttl",
    "margin",
    "takeover",
    "floating_address",
    "interface",
    "request_timeout",
    "keepalive_interval",
    "poll_interval",
];

fn ha_err(key: &str, problem: impl Into<String>) -> SettingError {
    SettingError::Ha {
        key: key.into(),
        problem: problem.into(),
    }
}

fn list(value: &str) -> Vec<String> {
    value
        .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn number(key: &str, value: &str, min: u32, max: u32, unit: &str) -> Result<u32, SettingError> {
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|v| (min..=max).contains(v))
        .ok_or_else(|| {
            ha_err(
                key,
                format!("'{value}' must be a whole number of {unit} from {min} to {max}"),
            )
        })
}

fn path(key: &str, value: &str) -> Result<Option<PathBuf>, SettingError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(ha_err(key, "is empty: give a file path"));
    }
    Ok(Some(PathBuf::from(v)))
}

/// Names of groups and instances: they become etcd keys and log fields.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Parses `ADDR/PREFIX` with the interface `dev`.
pub fn parse_floating(cidr: &str, dev: &str) -> Result<FloatingSpec, SettingError> {
    let bad = |p: String| ha_err("floating_address", p);
    let (a, p) = cidr
        .split_once('/')
        .ok_or_else(|| bad(format!("'{cidr}' needs a prefix length, e.g. 10.0.0.5/24")))?;
    let addr: IpAddr = a
        .parse()
        .map_err(|_| bad(format!("'{a}' is not an IP address")))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix_len = p
        .parse::<u8>()
        .ok()
        .filter(|n| *n <= max)
        .ok_or_else(|| bad(format!("prefix length '{p}' is not 0..{max}")))?;
    if dev.is_empty() || dev.len() > 15 || dev.contains('/') || dev.contains(char::is_whitespace) {
        return Err(bad(format!("interface name '{dev}' is invalid")));
    }
    Ok(FloatingSpec {
        addr,
        prefix_len,
        dev: dev.into(),
    })
}

impl HaSettings {
    /// Whether high availability is on (`endpoints` set).
    pub fn enabled(&self) -> bool {
        !self.endpoints.is_empty()
    }

    /// Applies one key (case-insensitive).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), SettingError> {
        let k = key.trim().to_ascii_lowercase();
        let v = value.trim();
        match k.as_str() {
            "endpoints" => {
                let eps = list(v);
                for e in &eps {
                    let ok = (e.starts_with("http://") || e.starts_with("https://"))
                        && e.split_once("://")
                            .is_some_and(|(_, rest)| !rest.is_empty());
                    if !ok {
                        return Err(ha_err(
                            "endpoints",
                            format!("'{e}' is not an etcd client URL (https://HOST:PORT or http://HOST:PORT)"),
                        ));
                    }
                }
                self.endpoints = eps;
            }
            "group" => {
                if !valid_name(v) {
                    return Err(ha_err(
                        "group",
                        format!("'{v}' must be 1-128 characters of A-Z a-z 0-9 - _ ."),
                    ));
                }
                self.group = v.into();
            }
            "name" => {
                if !v.is_empty() && !valid_name(v) {
                    return Err(ha_err(
                        "name",
                        format!("'{v}' must be 1-128 characters of A-Z a-z 0-9 - _ . (empty: the host name)"),
                    ));
                }
                self.name = v.into();
            }
            "tls_ca" => self.tls_ca = path(&k, v)?,
            "tls_cert" => self.tls_cert = path(&k, v)?,
            "tls_key" => self.tls_key = path(&k, v)?,
            "user" => {
                if v.is_empty() {
                    return Err(ha_err("user", "is empty"));
                }
                self.user = Some(v.into());
            }
            "password" => self.password = Some(value.to_string()),
            "password_file" => self.password_file = path(&k, v)?,
            "lease_ttl" => self.lease_ttl_s = number(&k, v, 2, 300, "seconds")?,
            "margin" => self.margin_ms = number(&k, v, 1, 60_000, "milliseconds")?,
            "takeover" => {
                self.takeover = match v.to_ascii_lowercase().as_str() {
                    "wait-previous-ttl" | "wait" => Takeover::WaitPreviousTtl,
                    "trust-expiry" | "trust" => Takeover::TrustExpiry,
                    _ => {
                        return Err(ha_err(
                            "takeover",
                            format!("'{v}' is not wait-previous-ttl or trust-expiry"),
                        ))
                    }
                }
            }
            "floating_address" => self.floating_raw = list(v),
            "interface" => {
                if v.is_empty() {
                    return Err(ha_err("interface", "is empty"));
                }
                self.interface = Some(v.into());
            }
            "request_timeout" => {
                self.request_timeout_ms = number(&k, v, 100, 60_000, "milliseconds")?
            }
            "keepalive_interval" => {
                self.keepalive_interval_ms = number(&k, v, 100, 60_000, "milliseconds")?
            }
            "poll_interval" => self.poll_interval_ms = number(&k, v, 10, 60_000, "milliseconds")?,
            // `enabled = false` keeps a prepared [ha] table inactive.
            "enabled" => {
                if parse_bool(v) == Some(false) {
                    self.endpoints.clear();
                } else if parse_bool(v).is_none() {
                    return Err(ha_err("enabled", format!("'{v}' is not a boolean")));
                }
            }
            _ => {
                return Err(SettingError::HaUnknownKey {
                    key: key.into(),
                    known: HA_KEYS,
                })
            }
        }
        Ok(())
    }

    /// Applies a `KEY=VALUE` argument (`--ha`).
    pub fn set_pair(&mut self, pair: &str) -> Result<(), SettingError> {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| SettingError::NotKeyValue { pair: pair.into() })?;
        self.set(k, v)
    }

    /// Applies the `[ha]` table of the configuration file.
    pub fn apply_toml(&mut self, table: &toml::Table) -> Result<(), SettingError> {
        for (k, v) in table {
            let text = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Array(items) => {
                    let mut parts = Vec::new();
                    for item in items {
                        match item {
                            toml::Value::String(s) => parts.push(s.clone()),
                            _ => {
                                return Err(SettingError::WrongType {
                                    key: format!("ha.{k}"),
                                    expected: "a list of strings",
                                })
                            }
                        }
                    }
                    parts.join(",")
                }
                _ => {
                    return Err(SettingError::WrongType {
                        key: format!("ha.{k}"),
                        expected: "a string, number, boolean or list of strings",
                    })
                }
            };
            self.set(k, &text)?;
        }
        Ok(())
    }

    /// Resolves the floating addresses (each `ADDR/PREFIX@IFACE`, or
    /// `ADDR/PREFIX` on `interface`) and checks the settings against each
    /// other. Called once everything is applied.
    pub fn finish(&mut self) -> Result<(), SettingError> {
        let mut out = Vec::new();
        for raw in &self.floating_raw {
            let (cidr, dev) = match raw.split_once('@') {
                Some((c, d)) => (c, d.to_string()),
                None => match &self.interface {
                    Some(d) => (raw.as_str(), d.clone()),
                    None => {
                        return Err(ha_err(
                            "floating_address",
                            format!("'{raw}' names no interface: write ADDR/PREFIX@IFACE or set [ha] interface"),
                        ))
                    }
                },
            };
            out.push(parse_floating(cidr, &dev)?);
        }
        self.floating = out;
        if !self.enabled() {
            return Ok(());
        }
        let ttl_ms = u64::from(self.lease_ttl_s) * 1000;
        if u64::from(self.margin_ms) >= ttl_ms {
            return Err(ha_err(
                "margin",
                format!(
                    "{} ms must be below lease_ttl ({} s)",
                    self.margin_ms, self.lease_ttl_s
                ),
            ));
        }
        if u64::from(self.keepalive_interval_ms) + u64::from(self.request_timeout_ms)
            > ttl_ms - u64::from(self.margin_ms)
        {
            return Err(ha_err(
                "keepalive_interval",
                "plus request_timeout must fit in lease_ttl - margin, or the lease lapses between keep-alives",
            ));
        }
        if self.password.is_some() && self.password_file.is_some() {
            return Err(ha_err(
                "password",
                "give password or password_file, not both",
            ));
        }
        let has_password = self.password.is_some() || self.password_file.is_some();
        if self.user.is_some() != has_password {
            return Err(ha_err(
                "user",
                "user and password (or password_file) go together",
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ha_err("tls_cert", "tls_cert and tls_key go together"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_on_with_endpoints() {
        let mut h = HaSettings::default();
        assert!(!h.enabled());
        h.finish().unwrap();
        h.set(
            "endpoints",
            "https://10.0.0.1:2379, https://10.0.0.2:2379;http://x:2379",
        )
        .unwrap();
        assert_eq!(h.endpoints.len(), 3);
        assert!(h.enabled());
        h.set("enabled", "off").unwrap();
        assert!(!h.enabled());
    }

    #[test]
    fn floating_addresses_take_their_interface() {
        let mut h = HaSettings::default();
        h.set("endpoints", "http://e:2379").unwrap();
        h.set("floating_address", "10.0.0.5/24, fd00::5/64@eth1")
            .unwrap();
        let e = h.clone().finish().unwrap_err();
        assert!(e.to_string().contains("names no interface"), "{e}");
        h.set("interface", "eth0").unwrap();
        h.finish().unwrap();
        assert_eq!(h.floating.len(), 2);
        assert_eq!(h.floating[0].to_string(), "10.0.0.5/24@eth0");
        assert_eq!(h.floating[1].dev, "eth1");
        let mut bad = HaSettings::default();
        bad.set("floating_address", "10.0.0.5@eth0").unwrap();
        assert!(bad.finish().is_err());
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut h = HaSettings::default();
        for (k, v) in [
            ("endpoints", "10.0.0.1:2379"),
            ("group", "a/b"),
            ("name", "x y"),
            ("lease_ttl", "1"),
            ("takeover", "sometimes"),
            ("margin", "0"),
        ] {
            let e = h.set(k, v).unwrap_err();
            assert!(
                matches!(&e, SettingError::Ha { key, .. } if key == k),
                "{k}: {e}"
            );
        }
        assert!(matches!(
            h.set("nope", "1"),
            Err(SettingError::HaUnknownKey { .. })
        ));
        h.set("endpoints", "http://e:2379").unwrap();
        h.set("lease_ttl", "2").unwrap();
        h.set("margin", "1500").unwrap();
        let e = h.clone().finish().unwrap_err();
        assert!(e.to_string().contains("keepalive_interval"), "{e}");
        h.set("margin", "2000").unwrap();
        assert!(h
            .clone()
            .finish()
            .unwrap_err()
            .to_string()
            .contains("margin"));
        let mut u = HaSettings::default();
        u.set("endpoints", "http://e:2379").unwrap();
        u.set("user", "qnetd").unwrap();
        assert!(u.finish().unwrap_err().to_string().contains("password"));
    }

    /// The commented `[ha]` example of config/qnetd.toml is valid.
    #[test]
    fn the_example_in_the_config_file_is_valid() {
        let text = include_str!("../../config/qnetd.toml");
        let block: String = text
            .lines()
            .skip_while(|l| *l != "#[ha]")
            .skip(1)
            .filter_map(|l| l.strip_prefix('#'))
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(block.contains("endpoints"), "the example is in the file");
        let t: toml::Table = block.parse().unwrap();
        let mut h = HaSettings::default();
        h.apply_toml(&t).unwrap();
        h.finish().unwrap();
        assert_eq!(h.endpoints.len(), 3);
        assert_eq!(h.floating[0].to_string(), "10.0.0.100/24@eth0");
        let expected = HaSettings {
            endpoints: h.endpoints.clone(),
            name: "arbiter-a".into(),
            tls_ca: h.tls_ca.clone(),
            tls_cert: h.tls_cert.clone(),
            tls_key: h.tls_key.clone(),
            user: Some("qnetd".into()),
            password_file: h.password_file.clone(),
            floating: h.floating.clone(),
            floating_raw: h.floating_raw.clone(),
            ..HaSettings::default()
        };
        assert_eq!(h, expected, "the other example values are the defaults");
    }

    #[test]
    fn toml_lists_and_numbers() {
        let t: toml::Table = "endpoints = [\"https://a:2379\", \"https://b:2379\"]\nlease_ttl = 7\ngroup = \"g1\"\nfloating_address = \"10.1.0.9/24@br0\"\n"
            .parse()
            .unwrap();
        let mut h = HaSettings::default();
        h.apply_toml(&t).unwrap();
        h.finish().unwrap();
        assert_eq!(h.endpoints, ["https://a:2379", "https://b:2379"]);
        assert_eq!(h.lease_ttl_s, 7);
        assert_eq!(h.group, "g1");
        assert_eq!(h.floating[0].dev, "br0");
    }
}
