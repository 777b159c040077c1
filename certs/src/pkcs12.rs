//! A minimal PKCS#12 (RFC 7292) writer for one private key and its
//! certificate, protected by an *empty* password, as the corosync node tools
//! expect (`pk12util -i FILE -W ""`).
//!
//! Why a small writer of our own rather than a crate: the file must carry the
//! friendly name `Cluster Cert` on the certificate bag, because NSS takes the
//! nickname of an imported certificate from that attribute and
//! corosync-qdevice looks its client certificate up by that nickname. The
//! crates evaluated either label the certificate with its subject DN (so NSS
//! names it `CN=<cluster>`) or are unmaintained; and this writer needs nothing
//! beyond `yasna` and `ring`, which the crate already links through `rcgen`.
//!
//! Layout produced:
//!
//! ```text
//! PFX { version 3,
//!       authSafe = data( AuthenticatedSafe [ data( SafeContents [
//!           certBag { x509Certificate }   attrs: friendlyName, localKeyId
//!           keyBag  { PrivateKeyInfo }    attrs: friendlyName, localKeyId ] ) ] ),
//!       macData = HMAC-SHA256, key from the PKCS#12 KDF (ID 3) }
//! ```
//!
//! The key bag is a plain PKCS#8 `keyBag`, not a `pkcs8ShroudedKeyBag`:
//! with an empty password, encryption would only be obfuscation, and the
//! file must be protected by file permissions and a secure copy anyway.

use ring::digest;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use yasna::models::ObjectIdentifier;
use yasna::Tag;

/// `pkcs-7 data`.
const OID_DATA: &[u64] = &[1, 2, 840, 113549, 1, 7, 1];
/// `pkcs-12 keyBag`.
const OID_KEY_BAG: &[u64] = &[1, 2, 840, 113549, 1, 12, 10, 1, 1];
/// `pkcs-12 certBag`.
const OID_CERT_BAG: &[u64] = &[1, 2, 840, 113549, 1, 12, 10, 1, 3];
/// `pkcs-9 x509Certificate` (certificate type inside a certBag).
const OID_X509_CERT: &[u64] = &[1, 2, 840, 113549, 1, 9, 22, 1];
/// `pkcs-9 friendlyName`.
const OID_FRIENDLY_NAME: &[u64] = &[1, 2, 840, 113549, 1, 9, 20];
/// `pkcs-9 localKeyId`.
const OID_LOCAL_KEY_ID: &[u64] = &[1, 2, 840, 113549, 1, 9, 21];
/// `id-sha256`.
const OID_SHA256: &[u64] = &[2, 16, 840, 1, 101, 3, 4, 2, 1];

/// Iterations of the MAC key derivation (the usual OpenSSL/NSS default).
const MAC_ITERATIONS: u32 = 2048;
/// SHA-256 output length (`u` in RFC 7292 B.2).
const SHA256_LEN: usize = 32;
/// SHA-256 block length (`v` in RFC 7292 B.2).
const SHA256_BLOCK: usize = 64;

/// Build a PKCS#12 file holding `cert_der` and the PKCS#8 `key_pkcs8_der`,
/// both labelled `friendly_name`, with an empty password.
///
/// Fails only if the system random generator fails.
pub(crate) fn write_pfx(
    cert_der: &[u8],
    key_pkcs8_der: &[u8],
    friendly_name: &str,
) -> Result<Vec<u8>, ring::error::Unspecified> {
    // The local key id ties the key to its certificate; by convention it is
    // the SHA-1 of the certificate, any stable byte string will do.
    let local_key_id = digest::digest(&digest::SHA256, cert_der);
    let local_key_id = local_key_id.as_ref();

    let safe_contents = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            // certBag
            w.next().write_sequence(|w| {
                w.next()
                    .write_oid(&ObjectIdentifier::from_slice(OID_CERT_BAG));
                w.next().write_tagged(Tag::context(0), |w| {
                    w.write_sequence(|w| {
                        w.next()
                            .write_oid(&ObjectIdentifier::from_slice(OID_X509_CERT));
                        w.next()
                            .write_tagged(Tag::context(0), |w| w.write_bytes(cert_der));
                    })
                });
                write_bag_attributes(w.next(), friendly_name, local_key_id);
            });
            // keyBag
            w.next().write_sequence(|w| {
                w.next()
                    .write_oid(&ObjectIdentifier::from_slice(OID_KEY_BAG));
                w.next()
                    .write_tagged(Tag::context(0), |w| w.write_der(key_pkcs8_der));
                write_bag_attributes(w.next(), friendly_name, local_key_id);
            });
        })
    });

    let auth_safe = yasna::construct_der(|w| {
        w.write_sequence(|w| write_data_content_info(w.next(), &safe_contents))
    });

    let rng = SystemRandom::new();
    let mut salt = [0u8; 16];
    rng.fill(&mut salt)?;
    let mac_key = pkcs12_kdf_sha256(3, &empty_password(), &salt, MAC_ITERATIONS, SHA256_LEN);
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &mac_key), &auth_safe);

    Ok(yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_u8(3);
            write_data_content_info(w.next(), &auth_safe);
            // MacData
            w.next().write_sequence(|w| {
                w.next().write_sequence(|w| {
                    w.next().write_sequence(|w| {
                        w.next()
                            .write_oid(&ObjectIdentifier::from_slice(OID_SHA256));
                        w.next().write_null();
                    });
                    w.next().write_bytes(tag.as_ref());
                });
                w.next().write_bytes(&salt);
                w.next().write_u32(MAC_ITERATIONS);
            });
        })
    }))
}

/// `ContentInfo { contentType data, [0] EXPLICIT OCTET STRING content }`.
fn write_data_content_info(w: yasna::DERWriter<'_>, content: &[u8]) {
    w.write_sequence(|w| {
        w.next().write_oid(&ObjectIdentifier::from_slice(OID_DATA));
        w.next()
            .write_tagged(Tag::context(0), |w| w.write_bytes(content));
    });
}

/// `SET OF PKCS12Attribute` with friendlyName (BMPString) and localKeyId.
fn write_bag_attributes(w: yasna::DERWriter<'_>, friendly_name: &str, local_key_id: &[u8]) {
    w.write_set(|w| {
        w.next().write_sequence(|w| {
            w.next()
                .write_oid(&ObjectIdentifier::from_slice(OID_FRIENDLY_NAME));
            w.next()
                .write_set(|w| w.next().write_bmp_string(friendly_name));
        });
        w.next().write_sequence(|w| {
            w.next()
                .write_oid(&ObjectIdentifier::from_slice(OID_LOCAL_KEY_ID));
            w.next().write_set(|w| w.next().write_bytes(local_key_id));
        });
    });
}

/// The empty password as the PKCS#12 KDF sees it: a BMPString with its
/// two-byte terminator (what OpenSSL and NSS both use for `""`).
fn empty_password() -> [u8; 2] {
    [0, 0]
}

/// The PKCS#12 key derivation function (RFC 7292 appendix B.2) with SHA-256.
///
/// `id` selects the purpose (1 key, 2 IV, 3 MAC key); `password` is the
/// already BMP-encoded password including its terminator.
fn pkcs12_kdf_sha256(id: u8, password: &[u8], salt: &[u8], iterations: u32, n: usize) -> Vec<u8> {
    let v = SHA256_BLOCK;
    let d = vec![id; v];
    let fill = |src: &[u8]| -> Vec<u8> {
        if src.is_empty() {
            return Vec::new();
        }
        let len = v * src.len().div_ceil(v);
        src.iter().copied().cycle().take(len).collect()
    };
    let mut i_buf = fill(salt);
    i_buf.extend(fill(password));

    let mut out = Vec::with_capacity(n + SHA256_LEN);
    while out.len() < n {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(&d);
        ctx.update(&i_buf);
        let mut a = ctx.finish().as_ref().to_vec();
        for _ in 1..iterations {
            a = digest::digest(&digest::SHA256, &a).as_ref().to_vec();
        }
        out.extend_from_slice(&a);
        if out.len() >= n {
            break;
        }
        // B = A repeated to v bytes; every v-byte block of I becomes
        // (I_j + B + 1) mod 2^(8v).
        let b: Vec<u8> = a.iter().copied().cycle().take(v).collect();
        for block in i_buf.chunks_mut(v) {
            let mut carry: u16 = 1;
            for k in (0..v).rev() {
                let sum = u16::from(block[k]) + u16::from(b[k]) + carry;
                block[k] = (sum & 0xff) as u8;
                carry = sum >> 8;
            }
        }
    }
    out.truncate(n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn kdf_is_deterministic_and_sized() {
        let a = pkcs12_kdf_sha256(3, &[0, 0], b"saltsalt", 2048, 32);
        let b = pkcs12_kdf_sha256(3, &[0, 0], b"saltsalt", 2048, 32);
        assert_eq!(a, b);
        assert_eq!(a.len(), 32);
        let c = pkcs12_kdf_sha256(1, &[0, 0], b"saltsalt", 2048, 70);
        assert_eq!(c.len(), 70);
        assert_ne!(hex(&a), hex(&c[..32]));
    }

    #[test]
    fn pfx_is_der_sequence() {
        let pfx = write_pfx(&[0x30, 0x00], &[0x30, 0x00], "Cluster Cert").expect("rng");
        assert_eq!(pfx[0], 0x30);
        // Friendly name is present as big-endian UTF-16.
        let name: Vec<u8> = "Cluster Cert"
            .encode_utf16()
            .flat_map(|u| u.to_be_bytes())
            .collect();
        assert!(pfx.windows(name.len()).any(|w| w == name.as_slice()));
    }
}
