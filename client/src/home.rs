//! The config directory: where it is, and the non-secret files in it.
//!
//! ```text
//! $CONSENT_HOME (else $XDG_CONFIG_HOME/consent, else ~/.config/consent), mode 0700
//!   keys.json            the key store (see crate::keystore), mode 0600
//!   config.json          controller aliases and the subject id per controller, mode 0600
//!   heads/<subject>.json the highest (seq, hash, issued_at) this device has seen per subject
//!   locks/<subject>.lock exclusive lock held around fetch-head, sign, submit, cache update
//!   locks/config.lock    exclusive lock held around read-modify-write of config.json
//! ```
//!
//! Every file is replaced atomically (write a temporary file, fsync, rename), so a reader never
//! sees half a file, and two processes never interleave their writes.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proto::keys::{Hash, PublicKey};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// File name of the key store.
pub const KEYS_FILE: &str = "keys.json";
/// File name of the non-secret configuration.
pub const CONFIG_FILE: &str = "config.json";
/// How long a command waits for another `consent` process to release a lock.
pub const LOCK_WAIT: Duration = Duration::from_secs(120);

/// The config directory.
#[derive(Clone, Debug)]
pub struct Home {
    dir: PathBuf,
}

/// `config.json`: controller aliases and the subject ids this device uses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Format version (1).
    #[serde(default = "one")]
    pub version: u32,
    /// Alias name to controller key, so `--controller acme` works.
    #[serde(default)]
    pub aliases: BTreeMap<String, PublicKey>,
    /// Controller key to the subject id of this device's chain for that controller. Remembered
    /// because the subject id is the generation-0 key, which cannot be derived again once the
    /// device has moved to a later generation.
    #[serde(default)]
    pub subjects: BTreeMap<PublicKey, PublicKey>,
}

fn one() -> u32 {
    1
}

/// The highest head of a subject's chain this device has seen (signed, submitted or fetched and
/// verified).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenHead {
    /// Seq of the head.
    pub seq: u64,
    /// Its entry hash.
    pub hash: Hash,
    /// Its issued_at (ms).
    pub issued_at: u64,
}

/// An exclusive lock on a file in `locks/`; released when dropped (the file is closed).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Home {
    /// The config directory: `explicit` (from `--home` / `$CONSENT_HOME`), else
    /// `$XDG_CONFIG_HOME/consent`, else `$HOME/.config/consent`.
    ///
    /// # Errors
    /// [`Error::Usage`] when none of these is set.
    pub fn locate(explicit: Option<&Path>) -> Result<Home> {
        if let Some(d) = explicit.filter(|d| !d.as_os_str().is_empty()) {
            return Ok(Home {
                dir: d.to_path_buf(),
            });
        }
        if let Some(d) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
            return Ok(Home {
                dir: PathBuf::from(d).join("consent"),
            });
        }
        match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
            Some(h) => Ok(Home {
                dir: PathBuf::from(h).join(".config").join("consent"),
            }),
            None => Err(Error::Usage(
                "cannot find a config directory: set CONSENT_HOME, XDG_CONFIG_HOME or HOME".into(),
            )),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `keys.json`.
    pub fn keys_path(&self) -> PathBuf {
        self.dir.join(KEYS_FILE)
    }

    /// `config.json`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }

    fn head_path(&self, subject: &PublicKey) -> PathBuf {
        self.dir.join("heads").join(format!("{subject}.json"))
    }

    /// Creates the directory (mode 0700) and its `heads/` and `locks/` subdirectories.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn ensure(&self) -> Result<()> {
        for d in [
            self.dir.clone(),
            self.dir.join("heads"),
            self.dir.join("locks"),
        ] {
            create_private_dir(&d)?;
        }
        Ok(())
    }

    /// Reads `config.json` (the default when it does not exist).
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::BadFile`].
    pub fn config(&self) -> Result<Config> {
        let path = self.config_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| Error::BadFile {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config {
                version: 1,
                ..Config::default()
            }),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Read-modify-write of `config.json` under `locks/config.lock`; writes only if `change`
    /// changed something. Returns the config after the change.
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::BadFile`], or the error of `change`.
    pub fn update_config(&self, change: impl FnOnce(&mut Config) -> Result<()>) -> Result<Config> {
        self.ensure()?;
        let _lock = self.lock("config")?;
        let before = self.config()?;
        let mut after = before.clone();
        change(&mut after)?;
        if after != before {
            let text = serde_json::to_string_pretty(&after)
                .map_err(|e| Error::Usage(format!("serialising the config: {e}")))?;
            write_atomic(&self.config_path(), text.as_bytes())?;
        }
        Ok(after)
    }

    /// The head this device has seen for `subject`, if any.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::BadFile`].
    pub fn seen_head(&self, subject: &PublicKey) -> Result<Option<SeenHead>> {
        let path = self.head_path(subject);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| Error::BadFile {
                    path: path.display().to_string(),
                    message: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Raises the seen head of `subject` to `head` if it is higher. Call with the subject's lock
    /// held.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::BadFile`].
    pub fn raise_seen_head(&self, subject: &PublicKey, head: SeenHead) -> Result<()> {
        self.ensure()?;
        if let Some(old) = self.seen_head(subject)? {
            if old.seq >= head.seq {
                return Ok(());
            }
        }
        let text = serde_json::to_string(&head)
            .map_err(|e| Error::Usage(format!("serialising the head cache: {e}")))?;
        write_atomic(&self.head_path(subject), text.as_bytes())
    }

    /// Takes the exclusive lock of `subject` (waiting at most [`LOCK_WAIT`]).
    ///
    /// # Errors
    /// [`Error::Io`], or [`Error::Usage`] when another process holds it too long.
    pub fn lock_subject(&self, subject: &PublicKey) -> Result<Lock> {
        self.ensure()?;
        self.lock(&subject.to_string())
    }

    fn lock(&self, name: &str) -> Result<Lock> {
        let path = self.dir.join("locks").join(format!("{name}.lock"));
        let file = open_private(&path, false)?;
        let deadline = Instant::now() + LOCK_WAIT;
        let mut pause = Duration::from_millis(2);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Lock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) => {
                    if Instant::now() >= deadline {
                        return Err(Error::Usage(format!(
                            "another consent process has held {} for more than {} s",
                            path.display(),
                            LOCK_WAIT.as_secs()
                        )));
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(Error::io(format!("locking {}", path.display()), e))
                }
            }
        }
    }
}

/// Creates `dir` (and parents) and makes it private (0700) on Unix.
///
/// # Errors
/// [`Error::Io`].
pub fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(dir)
            .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io(format!("restricting {}", dir.display()), e))?;
        }
    }
    Ok(())
}

/// Opens (creating, mode 0600 on Unix) a file for writing; with `create_new`, fails if it exists.
fn open_private(path: &Path, create_new: bool) -> Result<File> {
    let mut o = OpenOptions::new();
    o.write(true);
    if create_new {
        o.create_new(true);
    } else {
        o.create(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))
}

/// Writes a new file (mode 0600) that must not exist yet, and syncs it.
///
/// # Errors
/// [`Error::Io`] (kind `AlreadyExists` when the file exists).
pub fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = open_private(path, true)?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    sync_parent(path);
    Ok(())
}

/// Replaces `path` atomically with `bytes` (mode 0600): a unique temporary file in the same
/// directory, fsync, rename, fsync of the directory.
///
/// # Errors
/// [`Error::Io`].
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut nonce = [0u8; 8];
    getrandom::getrandom(&mut nonce)
        .map_err(|e| Error::Usage(format!("drawing a temporary file name: {e}")))?;
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        hex::encode(nonce)
    ));
    let result = (|| {
        let mut f = open_private(&tmp, true)?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        std::fs::rename(&tmp, path).map_err(|e| {
            Error::io(
                format!("renaming {} to {}", tmp.display(), path.display()),
                e,
            )
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    sync_parent(path);
    Ok(())
}

/// Best effort: fsync the directory holding `path` so a rename or creation survives a crash.
fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_with_typed_keys() {
        let mut c = Config {
            version: 1,
            ..Config::default()
        };
        let k = proto::SecretKey::from_seed([3; 32]).public_key();
        c.aliases.insert("acme".into(), k);
        c.subjects.insert(k, k);
        let text = serde_json::to_string(&c).expect("serialise");
        let back: Config = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, c);
    }

    #[test]
    fn seen_head_only_rises_and_files_are_private() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let home = Home::locate(Some(&tmp.path().join("h"))).expect("home");
        let s = proto::SecretKey::from_seed([4; 32]).public_key();
        assert_eq!(home.seen_head(&s).expect("read"), None);
        let h = |seq| SeenHead {
            seq,
            hash: Hash::from_bytes([seq as u8; 32]),
            issued_at: seq,
        };
        home.raise_seen_head(&s, h(3)).expect("raise");
        home.raise_seen_head(&s, h(2)).expect("no-op");
        assert_eq!(home.seen_head(&s).expect("read"), Some(h(3)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(home.head_path(&s))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            let mode = std::fs::metadata(home.dir())
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        let _a = home.lock_subject(&s).expect("lock");
    }
}
