//! A lease's secrets: its console and watch tokens (32 random bytes from the system, hex) and,
//! when the request brings no public key, an ed25519 SSH key made for the lease (the `ssh-key`
//! crate, OpenSSH formats). None of them is ever logged: [`SshKeyPair`]'s Debug hides the
//! private key.

use ssh_key::{Algorithm, LineEnding, PrivateKey, PublicKey};

/// Why a secret could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("no random bytes from the system: {0}")]
    Random(String),
    #[error("cannot make an SSH key: {0}")]
    Key(String),
    /// The request's `ssh_public_key` is not an OpenSSH public key.
    #[error("'ssh_public_key' is not an OpenSSH public key (ssh-ed25519 AAAA... comment): {0}")]
    PublicKey(String),
}

/// A new token: 32 random bytes, hex (64 characters).
pub fn token() -> Result<String, SecretError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| SecretError::Random(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// An SSH keypair made for a lease.
#[derive(Clone)]
pub struct SshKeyPair {
    /// `ssh-ed25519 AAAA... comment`: what the worker authorises on the board.
    pub public: String,
    /// The OpenSSH private key (PEM-like text): shown to the holder only.
    pub private: String,
}

impl std::fmt::Debug for SshKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshKeyPair")
            .field("public", &self.public)
            .field("private", &"<secret>")
            .finish()
    }
}

/// A new ed25519 keypair with `comment` (e.g. `basalt-reservation-41`).
pub fn ssh_keypair(comment: &str) -> Result<SshKeyPair, SecretError> {
    let mut key = PrivateKey::random(&mut ssh_key::rand_core::OsRng, Algorithm::Ed25519)
        .map_err(|e| SecretError::Key(e.to_string()))?;
    key.set_comment(comment);
    let private = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| SecretError::Key(e.to_string()))?
        .to_string();
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| SecretError::Key(e.to_string()))?;
    Ok(SshKeyPair { public, private })
}

/// A request's public key, checked and written back on one line.
pub fn check_public_key(text: &str) -> Result<String, SecretError> {
    let line = text.trim();
    if line.contains('\n') {
        return Err(SecretError::PublicKey("it spans several lines".into()));
    }
    let key = PublicKey::from_openssh(line).map_err(|e| SecretError::PublicKey(e.to_string()))?;
    key.to_openssh()
        .map_err(|e| SecretError::PublicKey(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_64_hex_digits_and_differ() {
        let (a, b) = (token().unwrap(), token().unwrap());
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn a_made_key_reads_back_and_hides_its_secret() {
        let k = ssh_keypair("basalt-reservation-7").unwrap();
        assert!(k.public.starts_with("ssh-ed25519 "), "{}", k.public);
        assert!(k.public.ends_with(" basalt-reservation-7"));
        assert!(k.private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
        assert_eq!(check_public_key(&k.public).unwrap(), k.public);
        let shown = format!("{k:?}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    }

    #[test]
    fn bad_public_keys_are_refused() {
        for bad in ["", "ssh-ed25519", "ssh-ed25519 notbase64!", "hello world"] {
            assert!(
                matches!(check_public_key(bad), Err(SecretError::PublicKey(_))),
                "{bad}"
            );
        }
    }
}
