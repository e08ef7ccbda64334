//! Device key files: generate, save with owner-only permissions, load.
//!
//! # File format (version 1)
//!
//! A UTF-8 text file of exactly three lines, each ended by `\n`:
//!
//! ```text
//! groundtruth-device-key v1
//! secret <64 lower-case hex digits: the 32-byte ed25519 seed (RFC 8032 private key)>
//! device <64 lower-case hex digits: the 32-byte public key, i.e. the device id>
//! ```
//!
//! The `device` line is redundant (it is derived from the secret) and lets operators read the
//! device id without tools; [`load`] checks that it matches. On load, a trailing `\r` per line
//! and a missing final newline are tolerated; anything else is an error.
//!
//! # Safety rules
//!
//! - [`save`] creates the file with mode `0600` atomically: the key is written and fsynced to a
//!   temporary file in the same directory (created with `0600`, never wider), which is then
//!   hard-linked to the target name. Linking fails if the target exists, so an existing key is
//!   never overwritten, and no reader ever sees a half-written key.
//! - [`load`] refuses a file that the group or others may read or write (on Unix), and anything
//!   that is not a regular file.
//! - No function here logs or formats the secret; errors name the path and the problem only.
//!   [`DeviceKey`]'s `Debug` redacts it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::signing::DeviceKey;

/// First line of a version 1 key file.
pub const KEY_FILE_HEADER: &str = "groundtruth-device-key v1";

/// Generates a fresh key from the operating system's random number generator.
pub fn generate() -> DeviceKey {
    DeviceKey::generate(&mut rand::rngs::OsRng)
}

/// The text of a key file for `key` (see the module docs). Holds the secret: write it only
/// where [`save`] would.
pub fn encode_key_file(key: &DeviceKey) -> String {
    format!(
        "{KEY_FILE_HEADER}\nsecret {}\ndevice {}\n",
        hex::encode(key.seed()),
        key.device_id()
    )
}

/// Parses a key file's text (see the module docs).
pub fn decode_key_file(text: &str) -> core::result::Result<DeviceKey, &'static str> {
    let mut lines = text.lines().map(|l| l.strip_suffix('\r').unwrap_or(l));
    if lines.next() != Some(KEY_FILE_HEADER) {
        return Err("first line is not `groundtruth-device-key v1`");
    }
    let secret = lines
        .next()
        .and_then(|l| l.strip_prefix("secret "))
        .ok_or("second line is not `secret <hex>`")?;
    let device = lines
        .next()
        .and_then(|l| l.strip_prefix("device "))
        .ok_or("third line is not `device <hex>`")?;
    if lines.next().is_some() {
        return Err("unexpected lines after `device`");
    }
    let mut seed = [0u8; 32];
    hex::decode_to_slice(secret, &mut seed).map_err(|_| "secret is not 64 hex digits")?;
    let key = DeviceKey::from_seed(&seed);
    let mut id = [0u8; 32];
    hex::decode_to_slice(device, &mut id).map_err(|_| "device is not 64 hex digits")?;
    if key.device_id().0 != id {
        return Err("device id does not match the secret");
    }
    Ok(key)
}

fn key_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::KeyFile {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Saves `key` to `path` with owner-only permissions (`0600` on Unix), atomically, refusing to
/// overwrite an existing file. The parent directory must exist.
pub fn save(key: &DeviceKey, path: &Path) -> Result<()> {
    if path.exists() {
        return Err(key_err(path, "already exists; refusing to overwrite a key"));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| key_err(path, "path has no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);

    let result = write_private(&tmp, encode_key_file(key).as_bytes())
        .and_then(|()| fs::hard_link(&tmp, path))
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                key_err(path, "already exists; refusing to overwrite a key")
            } else {
                key_err(path, format!("cannot write: {e}"))
            }
        });
    // The temporary name goes either way; the key lives on under `path` if linking worked.
    let _ = fs::remove_file(&tmp);
    result?;
    sync_dir(&dir).map_err(|e| key_err(path, format!("cannot sync directory: {e}")))
}

/// Loads a key file, refusing files that the group or others may access.
pub fn load(path: &Path) -> Result<DeviceKey> {
    let meta = fs::metadata(path).map_err(|e| key_err(path, format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(key_err(path, "not a regular file"));
    }
    check_private(path, &meta)?;
    let text = fs::read_to_string(path).map_err(|e| key_err(path, format!("cannot read: {e}")))?;
    decode_key_file(&text).map_err(|reason| key_err(path, reason))
}

/// Loads the key at `path`, or generates one and saves it there if no file exists.
pub fn load_or_generate(path: &Path) -> Result<DeviceKey> {
    if path.exists() {
        return load(path);
    }
    let key = generate();
    save(&key, path)?;
    Ok(key)
}

#[cfg(unix)]
fn check_private(path: &Path, meta: &fs::Metadata) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(key_err(
            path,
            format!(
                "permissions {mode:04o} let group or others access the key; run `chmod 600` on it"
            ),
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _meta: &fs::Metadata) -> Result<()> {
    // Only Unix permission bits are checked; elsewhere protect the file with the platform's ACLs.
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Makes a directory entry change (create, rename, link) durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_load_gives_the_same_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("device.key");
        let key = DeviceKey::from_seed(&[3u8; 32]);
        save(&key, &path).expect("save");
        let back = load(&path).expect("load");
        assert_eq!(back.seed(), key.seed());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path()).expect("ls").collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn save_refuses_to_overwrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("device.key");
        save(&DeviceKey::from_seed(&[1u8; 32]), &path).expect("save");
        let err = save(&DeviceKey::from_seed(&[2u8; 32]), &path).expect_err("must refuse");
        assert!(matches!(err, Error::KeyFile { .. }));
        assert_eq!(load(&path).expect("load").seed(), [1u8; 32]);
    }

    #[cfg(unix)]
    #[test]
    fn load_refuses_group_or_world_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("device.key");
        save(&DeviceKey::from_seed(&[1u8; 32]), &path).expect("save");
        for mode in [0o640, 0o604, 0o660, 0o644] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
            let err = load(&path).expect_err("must refuse");
            let msg = err.to_string();
            assert!(msg.contains("chmod 600"), "{msg}");
            assert!(
                !msg.contains(&hex::encode([1u8; 32])),
                "secret leaked: {msg}"
            );
        }
    }

    #[test]
    fn decode_rejects_malformed_files() {
        let key = DeviceKey::from_seed(&[5u8; 32]);
        let good = encode_key_file(&key);
        assert!(decode_key_file(&good).is_ok());
        assert!(decode_key_file(&good.replace("\n", "\r\n")).is_ok());
        assert!(decode_key_file(good.trim_end()).is_ok());
        assert!(decode_key_file("").is_err());
        assert!(decode_key_file(&good.replace("v1", "v2")).is_err());
        assert!(decode_key_file(&format!("{good}extra\n")).is_err());
        let other = DeviceKey::from_seed(&[6u8; 32]).device_id().to_string();
        let wrong_id = good.replace(&key.device_id().to_string(), &other);
        assert_eq!(
            decode_key_file(&wrong_id).err(),
            Some("device id does not match the secret")
        );
        assert!(decode_key_file(&good.replace("secret 05", "secret zz")).is_err());
    }

    #[test]
    fn debug_and_errors_never_show_the_secret() {
        let key = DeviceKey::from_seed(&[7u8; 32]);
        let secret_hex = hex::encode(key.seed());
        assert!(!format!("{key:?}").contains(&secret_hex));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k");
        fs::write(&path, encode_key_file(&key).replace("device ", "devic ")).expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        let msg = load(&path).expect_err("malformed").to_string();
        assert!(!msg.contains(&secret_hex), "{msg}");
    }
}
