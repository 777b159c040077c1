//! Reading certificates: subjects, names, validity, fingerprints.
//!
//! Everything here takes untrusted bytes (PEM or DER) and never panics on
//! them: malformed input yields a [`CertError`] (or, for [`names`], an empty
//! list, so that a name check fails closed).

use std::time::{SystemTime, UNIX_EPOCH};

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use crate::CertError;

/// What [`describe`] tells about one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject DN, e.g. `CN=Qnetd Server`.
    pub subject: String,
    /// Issuer DN, e.g. `CN=QNet CA`.
    pub issuer: String,
    /// The subject's common names.
    pub common_names: Vec<String>,
    /// The DNS names of the subjectAltName extension (usually none).
    pub dns_names: Vec<String>,
    /// Serial number, hex with colons.
    pub serial: String,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// Start of validity, RFC 3339 (UTC).
    pub not_before_rfc3339: String,
    /// End of validity, RFC 3339 (UTC).
    pub not_after_rfc3339: String,
    /// SHA-256 of the DER certificate, upper-case hex with colons (the form
    /// `openssl x509 -fingerprint -sha256` and `certutil -L -n` print).
    pub sha256_fingerprint: String,
    /// Key type, e.g. `ECDSA P-256` or `RSA 2048`.
    pub key_type: String,
    /// Whether basic constraints mark it as a CA.
    pub is_ca: bool,
}

impl CertInfo {
    /// Whole days until `not_after`, from now (negative once expired).
    pub fn days_left(&self) -> i64 {
        days_left(self.not_after, unix_now())
    }
}

/// Current time as Unix seconds (0 if the clock is before 1970).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Whole days from `now` until `not_after` (both Unix seconds), rounded
/// down; negative when `not_after` has passed.
pub fn days_left(not_after: i64, now: i64) -> i64 {
    not_after.saturating_sub(now).div_euclid(86_400)
}

/// Split input into DER certificates: every `CERTIFICATE` PEM block if the
/// input looks like PEM (text before the first block is skipped, as in the
/// reference's `qnetd-cacert.crt`), else the input itself as one DER blob.
pub(crate) fn cert_ders(input: &[u8]) -> Result<Vec<Vec<u8>>, CertError> {
    if !looks_like_pem(input) {
        return Ok(vec![input.to_vec()]);
    }
    let mut out = Vec::new();
    for pem in Pem::iter_from_buffer(input) {
        let pem = pem.map_err(|e| CertError::Parse {
            what: "PEM data".into(),
            detail: e.to_string(),
        })?;
        if pem.label == "CERTIFICATE" || pem.label == "X509 CERTIFICATE" {
            out.push(pem.contents);
        }
    }
    if out.is_empty() {
        return Err(CertError::Parse {
            what: "PEM data".into(),
            detail: "no CERTIFICATE block found".into(),
        });
    }
    Ok(out)
}

/// True if the bytes contain a PEM armour line.
pub(crate) fn looks_like_pem(input: &[u8]) -> bool {
    input.windows(11).any(|w| w == b"-----BEGIN ")
}

pub(crate) fn parse_der(der: &[u8]) -> Result<X509Certificate<'_>, CertError> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| CertError::Parse {
        what: "certificate (DER or PEM expected)".into(),
        detail: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(CertError::Parse {
            what: "certificate".into(),
            detail: format!("{} trailing bytes after the certificate", rest.len()),
        });
    }
    Ok(cert)
}

/// Describe every certificate in `pem_or_der` (all `CERTIFICATE` blocks of a
/// PEM file, or one DER certificate).
pub fn describe(pem_or_der: &[u8]) -> Result<Vec<CertInfo>, CertError> {
    cert_ders(pem_or_der)?
        .iter()
        .map(|der| describe_der(der))
        .collect()
}

fn describe_der(der: &[u8]) -> Result<CertInfo, CertError> {
    let cert = parse_der(der)?;
    let validity = cert.validity();
    let not_before = validity.not_before.timestamp();
    let not_after = validity.not_after.timestamp();
    let fingerprint = ring::digest::digest(&ring::digest::SHA256, der);
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        common_names: common_names(&cert),
        dns_names: dns_names(&cert),
        serial: cert.raw_serial_as_string().to_uppercase(),
        not_before,
        not_after,
        not_before_rfc3339: rfc3339(not_before),
        not_after_rfc3339: rfc3339(not_after),
        sha256_fingerprint: hex_colon(fingerprint.as_ref()),
        key_type: key_type(&cert),
        is_ca: cert.is_ca(),
    })
}

/// The names a certificate is valid for, as the qnetd server matches them
/// against the cluster name: the DNS subjectAltNames if there are any, else
/// the subject common names (NSS's `CERT_VerifyCertName` rule).
///
/// Input that is not a DER certificate gives an empty list, so that any
/// name comparison fails closed.
pub fn names(der: &[u8]) -> Vec<String> {
    let Ok(cert) = parse_der(der) else {
        return Vec::new();
    };
    let dns = dns_names(&cert);
    if dns.is_empty() {
        common_names(&cert)
    } else {
        dns
    }
}

fn common_names(cert: &X509Certificate<'_>) -> Vec<String> {
    cert.subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect()
}

fn dns_names(cert: &X509Certificate<'_>) -> Vec<String> {
    match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(s) => Some((*s).to_owned()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Human name of a subject public key.
pub(crate) fn key_type_of_spki(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> String {
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string());
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
        Ok(PublicKey::EC(_)) => match curve.as_deref() {
            Some(crate::OID_P256) => "ECDSA P-256".into(),
            Some(crate::OID_P384) => "ECDSA P-384".into(),
            Some(crate::OID_P521) => "ECDSA P-521".into(),
            Some(other) => format!("EC (curve {other})"),
            None => "EC (unknown curve)".into(),
        },
        _ => {
            let alg = spki.algorithm.algorithm.to_id_string();
            if alg == crate::OID_ED25519 {
                "Ed25519".into()
            } else {
                format!("unknown ({alg})")
            }
        }
    }
}

fn key_type(cert: &X509Certificate<'_>) -> String {
    key_type_of_spki(cert.public_key())
}

/// Bytes as upper-case hex with colons.
pub(crate) fn hex_colon(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a year,
    // then split into 400-year eras of 146097 days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(rfc3339(4_102_444_800), "2100-01-01T00:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn days_left_rounds_down() {
        assert_eq!(days_left(86_400 * 10, 0), 10);
        assert_eq!(days_left(86_400 * 10 - 1, 0), 9);
        assert_eq!(days_left(0, 1), -1);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(describe(b"").is_err());
        assert!(describe(b"\x30\x82\xff\xff").is_err());
        assert!(
            describe(b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n").is_err()
        );
        assert!(
            describe(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").is_err()
        );
        assert!(names(b"nonsense").is_empty());
    }
}
