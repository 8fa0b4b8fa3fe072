//! The census on disk: the state file (the whole report, written atomically) and the
//! installation's fingerprint key beside it.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use super::rows::Report;

/// The census cannot be kept where the operator said.
#[derive(Debug, thiserror::Error)]
#[error("census.state_file {}: {reason}", path.display())]
pub struct StateFileError {
    pub path: PathBuf,
    pub reason: String,
}

/// Whether the state file's folder exists (or can be made) and takes a new file.
pub fn probe_writable(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, b"")?;
    std::fs::remove_file(&tmp)
}

/// Writes a temporary file with the JSON `write` makes, and renames it over the old one, so a
/// crash mid-write leaves the previous snapshot intact. Streamed: with 100 000 rows the text
/// is 20 MB, which the allocator would keep after the first save.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> serde_json::Result<()>,
) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    write(&mut file)?;
    file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, path)
}

pub fn restore(path: &Path) -> std::io::Result<Option<Report>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The key file that goes with a state file: `census.key` in the same folder.
pub fn key_file(state_file: &Path) -> PathBuf {
    state_file.with_file_name("census.key")
}

/// A new random fingerprint key.
pub fn new_key() -> [u8; 32] {
    use ring::rand::SecureRandom as _;
    let mut key = [0u8; 32];
    // The system's random source failing is not something a gateway can carry on from.
    ring::rand::SystemRandom::new()
        .fill(&mut key)
        .expect("the system random source works");
    key
}

/// The installation's fingerprint key: read from `path`, or made and written there (only the
/// owner may read it) the first time. Two processes starting at once agree: the file is
/// created exclusively and the loser reads the winner's.
pub fn installation_key(path: &Path) -> std::io::Result<Vec<u8>> {
    match read_key(path) {
        Ok(key) => return Ok(key),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    let key = new_key();
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            file.write_all(hex.as_bytes())?;
            file.sync_all()?;
            Ok(key.to_vec())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_key(path),
        Err(e) => Err(e),
    }
}

fn read_key(path: &Path) -> std::io::Result<Vec<u8>> {
    let text = std::fs::read_to_string(path)?;
    let text = text.trim();
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not 64 hex digits");
    if text.len() != 64 || !text.is_ascii() {
        return Err(bad());
    }
    (0..32)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| bad()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_installation_key_is_made_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("census.key");
        let first = installation_key(&path).unwrap();
        assert_eq!(installation_key(&path).unwrap(), first);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&path, "not a key").unwrap();
        assert!(
            installation_key(&path).is_err(),
            "a damaged key is an error, not replaced"
        );
    }
}
