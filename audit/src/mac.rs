//! HMAC-SHA256 (the `hmac` crate) over what each record commits to, with a
//! domain prefix per record kind so that one kind's MAC never passes for
//! another's. Verification compares in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn tag_bytes(key: &[u8], msg: &str) -> Vec<u8> {
    // HMAC takes keys of any length: `new_from_slice` does not fail for it.
    match HmacSha256::new_from_slice(key) {
        Ok(mut m) => {
            m.update(msg.as_bytes());
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// The hex MAC of `msg`.
pub fn tag(key: &[u8], msg: &str) -> String {
    tag_bytes(key, msg).iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `mac` (hex) is `msg`'s MAC, compared in constant time.
pub fn check(key: &[u8], msg: &str, mac: &str) -> bool {
    if mac.len() != 64 || !mac.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    let bytes: Vec<u8> = (0..32).map(|i| u8::from_str_radix(&mac[2 * i..2 * i + 2], 16).unwrap_or(0)).collect();
    let Ok(mut m) = HmacSha256::new_from_slice(key) else { return false };
    m.update(msg.as_bytes());
    m.verify_slice(&bytes).is_ok()
}

pub fn event(seq: u64, hash: &str) -> String {
    format!("segc-event:{seq}:{hash}")
}

pub fn anchor(seq: u64, hash: &str) -> String {
    format!("segc-anchor:{seq}:{hash}")
}

pub fn head(seq: u64, hash: &str) -> String {
    format!("segc-head:{seq}:{hash}")
}

pub fn checkpoint(seq: u64, hash: &str, ts: u64) -> String {
    format!("segc-checkpoint:{seq}:{hash}:{ts}")
}

/// What the first segc wrote into `HEAD` (no domain prefix), for migrating
/// logs of that format.
pub fn legacy_head(seq: u64, hash: &str) -> String {
    format!("{seq}:{hash}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let want = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert_eq!(super::tag(b"Jefe", "what do ya want for nothing?"), want);
        assert!(super::check(b"Jefe", "what do ya want for nothing?", want));
        assert!(!super::check(b"Jefe", "what do ya want for nothing!", want));
        assert!(!super::check(b"Jeff", "what do ya want for nothing?", want));
    }
}
