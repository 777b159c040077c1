//! The folder pcs, crmsh and Proxmox know as the qnetd NSS database
//! (`/etc/corosync/qnetd/nssdb`), as qnetd keeps it:
//!
//! * qnetd's key material as PEM files, the one source of truth: the CA
//!   (`qnetd-ca.pem`, `qnetd-ca-key.pem`), the server certificate
//!   (`qnetd-server.pem`, `qnetd-server-key.pem`) and the CA certificate for
//!   the nodes (`qnetd-cacert.crt`, which pcsd serves and crmsh copies);
//! * an empty NSS database (`cert9.db`, `key4.db`, `pkcs11.txt`: no
//!   certificate, no key), because pcs calls the folder "initialized" only
//!   when such files exist and deletes the folder on `pcs qdevice destroy`;
//!   a real database, so NSS tools pointed at the folder work and show that
//!   no key lives in it;
//! * the signed node certificates `cluster-NAME.crt` (DER).
//!
//! Ownership follows the stock script: when run as root, new files get the
//! owner and group of the folder's parent (`/etc/corosync/qnetd`, which the
//! package gives to group `coroqnetd`), so the daemon user can read the
//! server key but not the CA key.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use qnetd_certs::{nss, Pki};

/// qnetd's PEM files of a folder.
pub const PEM_FILES: [&str; 5] = Pki::FILES;

/// The files that make qnetd key material: the CA and the server
/// certificate with their keys (not `qnetd-cacert.crt`, a name the stock
/// script uses too).
pub const KEY_FILES: [&str; 4] = [Pki::CA_CERT, Pki::CA_KEY, Pki::SERVER_CERT, Pki::SERVER_KEY];

/// The key material files of `dir` that exist.
pub fn key_files_present(dir: &Path) -> Vec<PathBuf> {
    KEY_FILES
        .iter()
        .map(|f| dir.join(f))
        .filter(|p| p.symlink_metadata().is_ok())
        .collect()
}

/// The PEM files of `dir` that exist.
pub fn pem_files_present(dir: &Path) -> Vec<PathBuf> {
    PEM_FILES
        .iter()
        .map(|f| dir.join(f))
        .filter(|p| p.symlink_metadata().is_ok())
        .collect()
}

/// Permissions and ownership for new files of the folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Owner and group to give (root only): those of the parent folder.
    pub owner: Option<(u32, u32)>,
    /// Whether group members may write (the stock default; `-G` turns it
    /// off).
    pub group_write: bool,
}

impl Layout {
    /// The layout for `dir`: ownership from its parent when running as
    /// root.
    pub fn for_dir(dir: &Path, group_write: bool) -> Layout {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let owner = if root {
            dir.parent()
                .and_then(|p| fs::metadata(p).ok())
                .map(|m| (m.uid(), m.gid()))
        } else {
            None
        };
        Layout { owner, group_write }
    }

    /// Mode of the folder itself.
    pub fn dir_mode(&self) -> u32 {
        if self.group_write {
            0o770
        } else {
            0o750
        }
    }

    /// Mode of the NSS database files (no secret in them).
    pub fn db_mode(&self) -> u32 {
        if self.group_write {
            0o660
        } else {
            0o640
        }
    }

    /// Mode of one of qnetd's files: the CA key is for root only, the server
    /// key for the daemon's group too, certificates for everyone.
    pub fn pem_mode(name: &str) -> u32 {
        match name {
            Pki::CA_KEY => 0o600,
            Pki::SERVER_KEY => 0o640,
            _ => 0o644,
        }
    }

    /// Gives `path` the layout's ownership and `mode`.
    pub fn apply(&self, path: &Path, mode: u32) -> io::Result<()> {
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
        }
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
    }

    /// Applies the layout to the folder, its NSS database files and qnetd's
    /// PEM files.
    pub fn apply_all(&self, dir: &Path) -> io::Result<()> {
        self.apply(dir, self.dir_mode())?;
        for f in nss::db_files_present(dir) {
            self.apply(&f, self.db_mode())?;
        }
        for name in PEM_FILES {
            let p = dir.join(name);
            if p.exists() {
                self.apply(&p, Self::pem_mode(name))?;
            }
        }
        Ok(())
    }
}

/// Writes `data` to `path` through a temporary file and a rename, so a
/// reader never sees half a file; an existing file is replaced.
pub fn replace_file(path: &Path, data: &[u8], layout: &Layout, mode: u32) -> io::Result<()> {
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let _ = fs::remove_file(&tmp);
    let result = fs::write(&tmp, data)
        .and_then(|()| layout.apply(&tmp, mode))
        .and_then(|()| fs::File::open(&tmp)?.sync_all())
        .and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_keep_the_ca_key_private() {
        assert_eq!(Layout::pem_mode(Pki::CA_KEY), 0o600);
        assert_eq!(Layout::pem_mode(Pki::SERVER_KEY), 0o640);
        assert_eq!(Layout::pem_mode(Pki::CA_EXPORT), 0o644);
        let l = Layout {
            owner: None,
            group_write: false,
        };
        assert_eq!((l.dir_mode(), l.db_mode()), (0o750, 0o640));
    }

    #[test]
    fn replace_file_overwrites_atomically() {
        let dir = std::env::temp_dir().join(format!("qnetd-nssdir-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let l = Layout {
            owner: None,
            group_write: true,
        };
        let p = dir.join("cluster-a.crt");
        replace_file(&p, b"one", &l, 0o644).unwrap();
        replace_file(&p, b"two", &l, 0o644).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
