//! The `acme/` folder of the state directory: the account, the certificates and the ledger.
//!
//! ```text
//! acme/account.json       the account's key and URL, for the directory it was made with
//! acme/ledger.json        orders, issues and failures (see `plan`)
//! acme/certs/HOST.pem     the chain, then its private key: one file, one rename
//! ```
//!
//! Every file is written to a temporary beside it, synced and renamed over the old one: a
//! crash leaves the old file or the new one, never half of either. Keys are readable by the
//! owner only.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use instant_acme::AccountCredentials;
use serde::{Deserialize, Serialize};

use super::plan::Ledger;

pub struct Storage {
    dir: PathBuf,
}

/// `account.json`: credentials are only good with the CA that issued them.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

impl Storage {
    /// Opens (creating, owner-only) `dir` and `dir/certs`.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir.join("certs"))?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    pub fn certs_dir(&self) -> PathBuf {
        self.dir.join("certs")
    }

    /// The account made with `directory` earlier, if there is one.
    pub fn account(&self, directory: &str) -> Option<AccountCredentials> {
        let text = std::fs::read(self.dir.join("account.json")).ok()?;
        let stored: StoredAccount = serde_json::from_slice(&text).ok()?;
        (stored.directory == directory).then_some(stored.credentials)
    }

    pub fn save_account(
        &self,
        directory: &str,
        credentials: AccountCredentials,
    ) -> std::io::Result<()> {
        let stored = StoredAccount {
            directory: directory.to_owned(),
            credentials,
        };
        let json = serde_json::to_vec_pretty(&stored).map_err(std::io::Error::other)?;
        write_atomically(&self.dir.join("account.json"), &json)
    }

    /// Writes `host`'s certificate chain and key as one file; returns its path.
    pub fn save_certificate(&self, host: &str, chain: &str, key: &str) -> std::io::Result<PathBuf> {
        let path = self.certs_dir().join(format!("{host}.pem"));
        let mut pem = String::with_capacity(chain.len() + key.len() + 1);
        pem.push_str(chain.trim_end());
        pem.push('\n');
        pem.push_str(key);
        write_atomically(&path, pem.as_bytes())?;
        Ok(path)
    }

    /// The ledger; an unreadable one is started afresh (the CA's own limits still hold).
    pub fn ledger(&self) -> Ledger {
        std::fs::read(self.dir.join("ledger.json"))
            .ok()
            .and_then(|text| serde_json::from_slice(&text).ok())
            .unwrap_or_default()
    }

    pub fn save_ledger(&self, ledger: &Ledger) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(ledger).map_err(std::io::Error::other)?;
        write_atomically(&self.dir.join("ledger.json"), &json)
    }
}

/// Writes `bytes` to `path` by a synced temporary renamed over it, owner-only.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_certificate_is_one_owner_only_file_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&dir.path().join("acme")).unwrap();
        let path = storage
            .save_certificate("hrm.exempel.com", "CHAIN\n", "KEY\n")
            .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "CHAIN\nKEY\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        storage
            .save_certificate("hrm.exempel.com", "NEW", "KEY2\n")
            .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "NEW\nKEY2\n");
        let left: Vec<_> = std::fs::read_dir(storage.certs_dir()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary left behind");
    }

    #[test]
    fn the_ledger_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        assert_eq!(storage.ledger(), Ledger::default());
        let mut ledger = Ledger::default();
        ledger.ordered(1_800_000_000);
        ledger.failed("hrm.exempel.com", 1_800_000_000, "unreachable", 0.5);
        storage.save_ledger(&ledger).unwrap();
        assert_eq!(Storage::open(dir.path()).unwrap().ledger(), ledger);
    }
}
