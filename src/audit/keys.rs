//! Ed25519 keys and signed checkpoints.
//!
//! Key files: the private key is PKCS#8 in PEM (`-----BEGIN PRIVATE KEY-----`, readable by OpenSSL); the public
//! key is one line `ed25519 <base64 of the 32 key bytes>`. A checkpoint signs, for one stream, the sequence number
//! and hash of a record (which, through the chain, covers every record before it) and the time.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}: not a PEM private key (expected -----BEGIN PRIVATE KEY----- from `concierge audit keygen`)")]
    NotPem(String),
    #[error("{0}: not an Ed25519 PKCS#8 key")]
    NotEd25519(String),
    #[error("{0}: not a public key (expected `ed25519 <base64>` from `concierge audit keygen`)")]
    NotPublic(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot generate a key: {0}")]
    Generate(String),
}

pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.public().encode())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    pub fn encode(&self) -> String {
        format!("ed25519 {}", B64.encode(self.0))
    }

    pub fn parse(text: &str) -> Option<PublicKey> {
        let b64 = text.trim().strip_prefix("ed25519 ")?;
        let bytes = B64.decode(b64.trim()).ok()?;
        Some(PublicKey(bytes.try_into().ok()?))
    }

    /// A public key file, or the public half of a private key file.
    pub fn load(path: &Path) -> Result<PublicKey, KeyError> {
        let text = read(path)?;
        if text.contains("PRIVATE KEY") {
            return Ok(SigningKey::from_pem(&text, path)?.public());
        }
        PublicKey::parse(&text).ok_or_else(|| KeyError::NotPublic(path.display().to_string()))
    }

    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, signature)
            .is_ok()
    }
}

fn read(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.display().to_string(),
        source,
    })
}

impl SigningKey {
    pub fn load(path: &Path) -> Result<SigningKey, KeyError> {
        SigningKey::from_pem(&read(path)?, path)
    }

    fn from_pem(text: &str, path: &Path) -> Result<SigningKey, KeyError> {
        let name = || path.display().to_string();
        let body = text
            .split("-----BEGIN PRIVATE KEY-----")
            .nth(1)
            .and_then(|r| r.split("-----END PRIVATE KEY-----").next())
            .ok_or_else(|| KeyError::NotPem(name()))?;
        let der: String = body.split_whitespace().collect();
        let der = B64.decode(der).map_err(|_| KeyError::NotPem(name()))?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .map_err(|_| KeyError::NotEd25519(name()))?;
        Ok(SigningKey { pair })
    }

    /// A new key: (private key PEM, the key).
    pub fn generate() -> Result<(String, SigningKey), KeyError> {
        let rng = ring::rand::SystemRandom::new();
        let der =
            Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| KeyError::Generate(e.to_string()))?;
        let pair = Ed25519KeyPair::from_pkcs8(der.as_ref())
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        let b64 = B64.encode(der.as_ref());
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(chunk));
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        Ok((pem, SigningKey { pair }))
    }

    pub fn public(&self) -> PublicKey {
        let mut k = [0u8; 32];
        k.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(k)
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}

/// The public key file that goes with a private key file: `<path>.pub`.
pub fn public_path(path: &Path) -> std::path::PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".pub");
    p.into()
}

/// A new key written to `path` (owner-only) and its public half to [`public_path`].
pub fn create(path: &Path) -> Result<SigningKey, KeyError> {
    let (pem, key) = SigningKey::generate()?;
    let io = |source| KeyError::Write {
        path: path.display().to_string(),
        source,
    };
    write_private(path, &pem).map_err(io)?;
    std::fs::write(public_path(path), key.public().encode() + "\n").map_err(io)?;
    Ok(key)
}

/// Write a private key file readable by its owner only.
pub(crate) fn write_private(path: &Path, pem: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(pem.as_bytes())
}

/// One line of a stream's `checkpoints.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The instance whose chain this is (`audit.instance`); signed with the rest. Absent in checkpoints
    /// written before instances were named (they verify as they always did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    pub stream: String,
    /// The last record covered.
    pub seq: u64,
    /// Its line hash.
    pub hash: String,
    pub time: String,
    /// The signer's public key (`ed25519 <base64>`); `verify` checks it against the trusted key.
    pub key: String,
    /// Base64 Ed25519 signature over [`Checkpoint::message`].
    pub sig: String,
}

impl Checkpoint {
    /// What is signed: version 2 names the instance, version 1 (no instance) is what older checkpoints signed.
    pub fn message(
        instance: Option<&str>,
        stream: &str,
        seq: u64,
        hash: &str,
        time: &str,
    ) -> Vec<u8> {
        match instance {
            Some(i) => {
                format!("concierge-audit-checkpoint/2\n{i}\n{stream}\n{seq}\n{hash}\n{time}\n")
            }
            None => format!("concierge-audit-checkpoint/1\n{stream}\n{seq}\n{hash}\n{time}\n"),
        }
        .into_bytes()
    }

    pub fn new(
        key: &SigningKey,
        instance: Option<&str>,
        stream: &str,
        seq: u64,
        hash: &str,
        time: String,
    ) -> Checkpoint {
        let sig = key.sign(&Checkpoint::message(instance, stream, seq, hash, &time));
        Checkpoint {
            instance: instance.map(str::to_string),
            stream: stream.to_string(),
            seq,
            hash: hash.to_string(),
            time,
            key: key.public().encode(),
            sig: B64.encode(sig),
        }
    }

    /// Signed by `trusted` (and by the key it names).
    pub fn verify(&self, trusted: &PublicKey) -> bool {
        if PublicKey::parse(&self.key).as_ref() != Some(trusted) {
            return false;
        }
        let Ok(sig) = B64.decode(&self.sig) else {
            return false;
        };
        trusted.verify(
            &Checkpoint::message(
                self.instance.as_deref(),
                &self.stream,
                self.seq,
                &self.hash,
                &self.time,
            ),
            &sig,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_checkpoints_verify() {
        let dir = tempfile::tempdir().unwrap();
        let (pem, key) = SigningKey::generate().unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(&path, &pem).unwrap();
        let loaded = SigningKey::load(&path).unwrap();
        assert_eq!(loaded.public(), key.public());
        assert_eq!(PublicKey::load(&path).unwrap(), key.public());
        let pubfile = dir.path().join("k.pub");
        std::fs::write(&pubfile, key.public().encode()).unwrap();
        assert_eq!(PublicKey::load(&pubfile).unwrap(), key.public());

        let c = Checkpoint::new(
            &key,
            None,
            "audit",
            9,
            "ab",
            "2026-11-25T00:00:00.000Z".into(),
        );
        assert!(c.verify(&key.public()));
        let (_, other) = SigningKey::generate().unwrap();
        assert!(!c.verify(&other.public()), "another trusted key");
        let mut forged = c.clone();
        forged.seq = 10;
        assert!(!forged.verify(&key.public()), "changed after signing");
        let resigned = Checkpoint::new(&other, None, "audit", 9, "ab", c.time.clone());
        assert!(!resigned.verify(&key.public()), "signed with another key");

        std::fs::write(&path, "not a key").unwrap();
        assert!(matches!(SigningKey::load(&path), Err(KeyError::NotPem(_))));
    }
}
