//! SHA-256, for bundle checksums and manifests.

use std::io::Write;

use sha2::Digest;

pub fn digest(bytes: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(bytes).into()
}

pub fn hex(bytes: &[u8]) -> String {
    to_hex(&digest(bytes))
}

fn to_hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A writer that hashes what passes through it: an artifact is hashed while
/// it is written, not read back afterwards.
pub struct Hashing<W> {
    inner: W,
    hasher: sha2::Sha256,
}

impl<W: Write> Hashing<W> {
    pub fn new(inner: W) -> Self {
        Hashing { inner, hasher: sha2::Sha256::new() }
    }

    /// The writer back, and the lower-case hex SHA-256 of what was written.
    pub fn finish(self) -> (W, String) {
        (self.inner, to_hex(&self.hasher.finalize()))
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_while_writing_is_hashing_the_bytes() {
        let mut w = Hashing::new(Vec::new());
        w.write_all(b"segc ").unwrap();
        w.write_all(b"artifact").unwrap();
        let (bytes, sha) = w.finish();
        assert_eq!(bytes, b"segc artifact");
        assert_eq!(sha, hex(b"segc artifact"));
        assert_eq!(hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
