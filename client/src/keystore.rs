//! Where the device's keys live: the key store `keys.json`, or a single `--key` file.
//!
//! `keys.json` (mode 0600) holds the current generation `g`, the recovery master public key `A`
//! and `M_g`, either in hex (`"protection": "none"`) or sealed with a passphrase
//! (`"protection": "argon2id-chacha20poly1305"`: Argon2id derives a 32-byte key from the
//! passphrase and a random 16-byte salt; ChaCha20-Poly1305 encrypts `M_g` under a random 12-byte
//! nonce with `"consent-ledger/keystore/v1\0" || g (u32 BE) || A` as associated data, so neither
//! the generation nor `A` can be swapped without the passphrase noticing). The entropy behind the
//! recovery phrase is never stored.
//!
//! A `--key` file is text: the first non-comment line is an Ed25519 seed as 64 hex digits; an
//! optional line `recovery <64 hex digits>` names a recovery public key whose commitment the
//! first entry carries. Without it the first entry commits to an unspendable key, i.e. the chain
//! has no recovery. One key file signs for every controller, so it links the controllers' chains.

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use proto::entry::recovery_commitment;
use proto::keys::{Hash, PublicKey, SecretKey};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::keys::{blinded_recovery_key, Master};

const AAD_DOMAIN: &[u8] = b"consent-ledger/keystore/v1\0";

/// Argon2id cost parameters (memory in KiB, iterations, lanes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// The argon2 crate's defaults (OWASP's minimum for Argon2id): 19 MiB, 2 passes, 1 lane.
    fn default() -> Self {
        KdfParams {
            m_cost: Params::DEFAULT_M_COST,
            t_cost: Params::DEFAULT_T_COST,
            p_cost: Params::DEFAULT_P_COST,
        }
    }
}

/// How `M_g` is kept in `keys.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "protection", deny_unknown_fields)]
pub enum Sealed {
    /// In hex, unencrypted (the file's mode 0600 is the only protection).
    #[serde(rename = "none")]
    Plain {
        /// `M_g`, hex.
        master: String,
    },
    /// Encrypted with a key derived from a passphrase.
    #[serde(rename = "argon2id-chacha20poly1305")]
    Encrypted {
        /// Argon2id memory (KiB).
        m_cost: u32,
        /// Argon2id iterations.
        t_cost: u32,
        /// Argon2id lanes.
        p_cost: u32,
        /// Argon2id salt, hex (16 bytes).
        salt: String,
        /// ChaCha20-Poly1305 nonce, hex (12 bytes).
        nonce: String,
        /// `M_g` encrypted, with its tag, hex (48 bytes).
        ciphertext: String,
    },
}

/// The contents of `keys.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyStore {
    /// Format version (1).
    pub version: u32,
    /// The current generation `g`.
    pub generation: u32,
    /// The recovery master public key `A` (public: it lets the device commit to blinded recovery
    /// keys without the phrase).
    pub recovery_public: PublicKey,
    /// `M_g`, plain or sealed.
    pub master: Sealed,
}

fn aad(generation: u32, recovery_public: &PublicKey) -> Vec<u8> {
    let mut a = AAD_DOMAIN.to_vec();
    a.extend_from_slice(&generation.to_be_bytes());
    a.extend_from_slice(recovery_public.as_bytes());
    a
}

fn derive_key(
    passphrase: &str,
    salt: &[u8],
    p: KdfParams,
    path: &Path,
) -> Result<Zeroizing<[u8; 32]>> {
    let params =
        Params::new(p.m_cost, p.t_cost, p.p_cost, Some(32)).map_err(|e| Error::BadFile {
            path: path.display().to_string(),
            message: format!("argon2 parameters: {e}"),
        })?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, key.as_mut())
        .map_err(|e| Error::Key(format!("deriving the key store key: {e}")))?;
    Ok(key)
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b)
        .map_err(|e| Error::Key(format!("the OS random generator failed: {e}")))?;
    Ok(b)
}

impl KeyStore {
    /// Seals `master` (with `passphrase` when given and non-empty).
    ///
    /// # Errors
    /// [`Error::Key`] if the random generator or the KDF fails.
    pub fn seal(
        master: &Master,
        generation: u32,
        recovery_public: PublicKey,
        passphrase: Option<&str>,
        kdf: KdfParams,
    ) -> Result<KeyStore> {
        let sealed = match passphrase.filter(|p| !p.is_empty()) {
            None => Sealed::Plain {
                master: hex::encode(master.as_bytes()),
            },
            Some(pass) => {
                let salt: [u8; 16] = random()?;
                let nonce: [u8; 12] = random()?;
                let key = derive_key(pass, &salt, kdf, Path::new("keys.json"))?;
                let cipher = ChaCha20Poly1305::new(Key::from_slice(key.as_ref()));
                let ciphertext = cipher
                    .encrypt(
                        Nonce::from_slice(&nonce),
                        Payload {
                            msg: master.as_bytes(),
                            aad: &aad(generation, &recovery_public),
                        },
                    )
                    .map_err(|_| Error::Key("encrypting the key store failed".into()))?;
                Sealed::Encrypted {
                    m_cost: kdf.m_cost,
                    t_cost: kdf.t_cost,
                    p_cost: kdf.p_cost,
                    salt: hex::encode(salt),
                    nonce: hex::encode(nonce),
                    ciphertext: hex::encode(ciphertext),
                }
            }
        };
        Ok(KeyStore {
            version: 1,
            generation,
            recovery_public,
            master: sealed,
        })
    }

    /// Whether `M_g` is passphrase-protected.
    pub fn is_encrypted(&self) -> bool {
        matches!(self.master, Sealed::Encrypted { .. })
    }

    /// Reads `path`, refusing a file that other users can read.
    ///
    /// # Errors
    /// [`Error::Key`] when there is no key store (run `consent init`) or it is readable by others;
    /// [`Error::Io`]; [`Error::BadFile`].
    pub fn load(path: &Path) -> Result<KeyStore> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => Zeroizing::new(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Key(format!(
                    "no keys in {}: run `consent init` (or `consent recover`), or pass --key FILE",
                    path.display()
                )))
            }
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        check_private(path)?;
        let ks: KeyStore = serde_json::from_str(&text).map_err(|e| Error::BadFile {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        if ks.version != 1 {
            return Err(Error::BadFile {
                path: path.display().to_string(),
                message: format!("unknown key store version {}", ks.version),
            });
        }
        Ok(ks)
    }

    /// Recovers `M_g`; `passphrase` is needed when the store is encrypted.
    ///
    /// # Errors
    /// [`Error::WrongPassphrase`] when it does not decrypt; [`Error::BadFile`] when damaged.
    pub fn unlock(&self, path: &Path, passphrase: Option<&str>) -> Result<Master> {
        let bad = |m: &str| Error::BadFile {
            path: path.display().to_string(),
            message: m.to_owned(),
        };
        let mut out = Zeroizing::new([0u8; 32]);
        match &self.master {
            Sealed::Plain { master } => {
                hex::decode_to_slice(master, out.as_mut())
                    .map_err(|_| bad("master: expected 64 hex digits"))?;
            }
            Sealed::Encrypted {
                m_cost,
                t_cost,
                p_cost,
                salt,
                nonce,
                ciphertext,
            } => {
                let salt = hex::decode(salt).map_err(|_| bad("salt: not hex"))?;
                let nonce: [u8; 12] = hex::decode(nonce)
                    .ok()
                    .and_then(|n| n.try_into().ok())
                    .ok_or_else(|| bad("nonce: expected 24 hex digits"))?;
                let ciphertext = hex::decode(ciphertext).map_err(|_| bad("ciphertext: not hex"))?;
                let pass = passphrase.unwrap_or("");
                let kdf = KdfParams {
                    m_cost: *m_cost,
                    t_cost: *t_cost,
                    p_cost: *p_cost,
                };
                let key = derive_key(pass, &salt, kdf, path)?;
                let cipher = ChaCha20Poly1305::new(Key::from_slice(key.as_ref()));
                let plain = Zeroizing::new(
                    cipher
                        .decrypt(
                            Nonce::from_slice(&nonce),
                            Payload {
                                msg: &ciphertext,
                                aad: &aad(self.generation, &self.recovery_public),
                            },
                        )
                        .map_err(|_| Error::WrongPassphrase {
                            path: path.display().to_string(),
                        })?,
                );
                if plain.len() != 32 {
                    return Err(bad("the decrypted master is not 32 bytes"));
                }
                out.copy_from_slice(&plain);
            }
        }
        Ok(Master::from_bytes(*out))
    }

    /// The JSON text of the store.
    ///
    /// # Errors
    /// [`Error::Usage`] if serialisation fails (it does not for this type).
    pub fn to_json(&self) -> Result<Zeroizing<String>> {
        serde_json::to_string_pretty(self)
            .map(Zeroizing::new)
            .map_err(|e| Error::Usage(format!("serialising the key store: {e}")))
    }
}

/// Refuses a secret file that group or others may read (Unix).
///
/// # Errors
/// [`Error::Key`] naming the file and its mode; [`Error::Io`].
pub fn check_private(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(Error::Key(format!(
                "{} is accessible by other users (mode {:o}); run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            )));
        }
    }
    Ok(())
}

/// A single `--key` file (see the module docs).
pub struct KeyFile {
    /// The file.
    pub path: PathBuf,
    /// The signing key (also the subject of its chain).
    pub key: SecretKey,
    /// The optional recovery public key.
    pub recovery: Option<PublicKey>,
}

impl KeyFile {
    /// Reads and parses a key file, refusing one that other users can read.
    ///
    /// # Errors
    /// [`Error::Key`], [`Error::Io`] or [`Error::BadFile`].
    pub fn load(path: &Path) -> Result<KeyFile> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => Zeroizing::new(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Key(format!(
                    "key file {} does not exist (create one with `consent --key {} init`)",
                    path.display(),
                    path.display()
                )))
            }
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        check_private(path)?;
        let bad = |m: String| Error::BadFile {
            path: path.display().to_string(),
            message: m,
        };
        let mut seed: Option<Zeroizing<[u8; 32]>> = None;
        let mut recovery = None;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if seed.is_none() {
                let mut s = Zeroizing::new([0u8; 32]);
                hex::decode_to_slice(line, s.as_mut()).map_err(|_| {
                    bad(format!(
                        "line {}: expected the seed as 64 hex digits",
                        n + 1
                    ))
                })?;
                seed = Some(s);
            } else if let Some(r) = line.strip_prefix("recovery ") {
                let k: PublicKey = r
                    .trim()
                    .parse()
                    .map_err(|e| bad(format!("line {}: recovery key: {e}", n + 1)))?;
                recovery = Some(k);
            } else {
                return Err(bad(format!(
                    "line {}: expected `recovery <64 hex digits>`",
                    n + 1
                )));
            }
        }
        let seed = seed.ok_or_else(|| bad("no seed line".into()))?;
        Ok(KeyFile {
            path: path.to_path_buf(),
            key: SecretKey::from_seed(*seed),
            recovery,
        })
    }

    /// The text of a new key file.
    pub fn render(seed: &[u8; 32], recovery: Option<&PublicKey>) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::from(
            "# consent key file: an Ed25519 seed (keep secret), optionally a recovery public key\n",
        ));
        s.push_str(&hex::encode(seed));
        s.push('\n');
        if let Some(r) = recovery {
            s.push_str(&format!("recovery {r}\n"));
        }
        s
    }
}

/// The commitment a key file's first entry carries without a recovery key: to the all-zero key,
/// a point of small order that the signature rule rejects, so no rotation can ever match it.
pub fn unspendable_commitment() -> Hash {
    recovery_commitment(&PublicKey::from_bytes([0u8; 32]))
}

/// The keys a command signs with.
pub enum Identity {
    /// Derived from the recovery phrase: one key per controller.
    Phrase {
        /// `M_g`.
        master: Master,
        /// `g`.
        generation: u32,
        /// `A`.
        recovery_public: PublicKey,
    },
    /// One key for every controller, from a `--key` file.
    KeyFile(KeyFile),
}

impl Identity {
    /// The signing key for `controller`.
    pub fn signing_key(&self, controller: &PublicKey) -> SecretKey {
        match self {
            Identity::Phrase { master, .. } => master.signing_key(controller),
            Identity::KeyFile(k) => k.key.clone(),
        }
    }

    /// The recovery commitment for the first entry of a new chain for `controller`.
    ///
    /// # Errors
    /// [`Error::Key`] if the stored recovery public key is not a valid point.
    pub fn first_recovery(&self, controller: &PublicKey) -> Result<Hash> {
        match self {
            Identity::Phrase {
                generation,
                recovery_public,
                ..
            } => blinded_recovery_key(recovery_public, controller, *generation)
                .map(|k| recovery_commitment(&k))
                .map_err(|e| Error::Key(e.to_string())),
            Identity::KeyFile(k) => Ok(k
                .recovery
                .as_ref()
                .map_or_else(unspendable_commitment, recovery_commitment)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> KdfParams {
        KdfParams {
            m_cost: 64,
            t_cost: 1,
            p_cost: 1,
        }
    }

    #[test]
    fn sealed_master_opens_only_with_its_passphrase_and_header() {
        let m = Master::from_bytes([9; 32]);
        let a = SecretKey::from_seed([1; 32]).public_key();
        let ks = KeyStore::seal(&m, 0, a, Some("hunter2"), cheap()).expect("seal");
        assert!(ks.is_encrypted());
        let text = ks.to_json().expect("json");
        assert!(!text.contains(&hex::encode([9u8; 32])));
        let p = Path::new("keys.json");
        let back = ks.unlock(p, Some("hunter2")).expect("unlock");
        assert_eq!(back.as_bytes(), m.as_bytes());
        assert!(matches!(
            ks.unlock(p, Some("wrong")),
            Err(Error::WrongPassphrase { .. })
        ));
        let mut swapped = ks.clone();
        swapped.generation = 1;
        assert!(matches!(
            swapped.unlock(p, Some("hunter2")),
            Err(Error::WrongPassphrase { .. })
        ));
        let plain = KeyStore::seal(&m, 0, a, Some(""), cheap()).expect("plain");
        assert!(!plain.is_encrypted());
        assert_eq!(
            plain.unlock(p, None).expect("plain").as_bytes(),
            m.as_bytes()
        );
    }

    #[test]
    fn key_files_parse_and_refuse_garbage() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("k");
        let r = SecretKey::from_seed([5; 32]).public_key();
        crate::home::write_new(&path, KeyFile::render(&[7; 32], Some(&r)).as_bytes())
            .expect("write");
        let k = KeyFile::load(&path).expect("load");
        assert_eq!(k.key.seed(), &[7; 32]);
        assert_eq!(k.recovery, Some(r));
        let bad = tmp.path().join("bad");
        crate::home::write_new(&bad, b"abcd\n").expect("write");
        assert!(matches!(KeyFile::load(&bad), Err(Error::BadFile { .. })));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            assert!(matches!(KeyFile::load(&path), Err(Error::Key(_))));
        }
    }

    #[test]
    fn the_unspendable_commitment_cannot_be_met() {
        // The all-zero key has small order: the signature rule rejects it for any signature.
        let zero = PublicKey::from_bytes([0; 32]);
        let sig = SecretKey::from_seed([1; 32]).sign(b"x");
        assert!(proto::sig::verify(&zero, b"x", &sig).is_err());
        assert_eq!(unspendable_commitment(), recovery_commitment(&zero));
    }
}
