//! Ed25519 keys of seals. A key file is one line, `ed25519-secret <64 hex>`
//! (the 32-byte seed) or `ed25519-public <64 hex>`: a verifying host needs
//! only the public one. The key id is the first 8 bytes of SHA-256(public
//! key), in hex.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use super::SealError;

const SECRET: &str = "ed25519-secret";
const PUBLIC: &str = "ed25519-public";

/// What `seal_key_file` holds.
#[derive(Clone)]
pub enum Key {
    Signing(SigningKey),
    Verifying(VerifyingKey),
}

impl Key {
    pub fn verifying(&self) -> VerifyingKey {
        match self {
            Key::Signing(k) => k.verifying_key(),
            Key::Verifying(k) => *k,
        }
    }

    pub fn id(&self) -> String {
        key_id(&self.verifying())
    }

    pub fn sign(&self, hash: &[u8; 32]) -> Option<[u8; 64]> {
        match self {
            Key::Signing(k) => Some(k.sign(hash).to_bytes()),
            Key::Verifying(_) => None,
        }
    }
}

pub fn key_id(k: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(k.as_bytes())[..8])
}

/// Whether `signature` is the key's signature of `hash`.
pub fn verify(k: &VerifyingKey, hash: &[u8], signature: &[u8]) -> bool {
    let Ok(sig) = Signature::from_slice(signature) else {
        return false;
    };
    k.verify(hash, &sig).is_ok()
}

fn bad(path: &Path, why: impl Into<String>) -> SealError {
    SealError::Key {
        path: path.to_path_buf(),
        why: why.into(),
    }
}

/// Reads a key file, naming the file and what is wrong with it.
pub fn load(path: &Path) -> Result<Key, SealError> {
    let text = std::fs::read_to_string(path).map_err(|e| bad(path, e.to_string()))?;
    let (kind, hex_part) = text.trim().split_once(' ').ok_or_else(|| {
        bad(
            path,
            format!("expected \"{SECRET} <hex>\" or \"{PUBLIC} <hex>\""),
        )
    })?;
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_part.trim(), &mut bytes)
        .map_err(|_| bad(path, "the key is not 64 hex digits"))?;
    match kind {
        SECRET => Ok(Key::Signing(SigningKey::from_bytes(&bytes))),
        PUBLIC => VerifyingKey::from_bytes(&bytes)
            .map(Key::Verifying)
            .map_err(|_| bad(path, "not a valid Ed25519 public key")),
        other => Err(bad(path, format!("unknown key kind {other:?}"))),
    }
}

/// Writes a new key pair: `path` (secret, mode 600, never overwritten) and
/// `path.pub`. Returns the public file's path and the key id.
pub fn keygen(path: &Path) -> Result<(PathBuf, String), SealError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let public = path.with_extension(match path.extension() {
        Some(e) => format!("{}.pub", e.to_string_lossy()),
        None => "pub".into(),
    });
    for p in [path, public.as_path()] {
        if p.exists() {
            return Err(bad(p, "exists already; strata never overwrites a key"));
        }
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| bad(path, e.to_string()))?;
    writeln!(f, "{SECRET} {}", hex::encode(key.to_bytes()))
        .map_err(|e| bad(path, e.to_string()))?;
    f.sync_all().map_err(|e| bad(path, e.to_string()))?;
    let vk = key.verifying_key();
    std::fs::write(
        &public,
        format!("{PUBLIC} {}\n", hex::encode(vk.as_bytes())),
    )
    .map_err(|e| bad(&public, e.to_string()))?;
    Ok((public, key_id(&vk)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_then_load_signs_and_verifies() {
        let dir = std::env::temp_dir().join(format!("strata-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("seal.key");
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(dir.join("seal.key.pub"));
        let (public, id) = keygen(&path).unwrap();
        assert!(keygen(&path).is_err(), "never overwrites");
        let secret = load(&path).unwrap();
        let verifying = load(&public).unwrap();
        assert_eq!(secret.id(), id);
        assert_eq!(verifying.id(), id);
        let sig = secret.sign(&[7u8; 32]).unwrap();
        assert!(verify(&verifying.verifying(), &[7u8; 32], &sig));
        assert!(!verify(&verifying.verifying(), &[8u8; 32], &sig));
        assert!(verifying.sign(&[7u8; 32]).is_none());
        std::fs::write(&path, "ed25519-secret xyz\n").unwrap();
        let e = load(&path).err().unwrap().to_string();
        assert!(e.contains("seal.key") && e.contains("hex"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
