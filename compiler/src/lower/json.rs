//! A direct writer of pretty JSON for the large cloud documents (tens of
//! thousands of rules): serde_json's pretty layout byte for byte (two-space
//! indent, `"key": value`, `[]` for an empty list), written from the typed
//! values without going through `Serialize`. Each writer's output is tested
//! against `serde_json::to_vec_pretty` of the same value, so the two cannot
//! drift apart.

use std::io::{self, Write};

/// Flushed to the sink past this many bytes, at element boundaries.
const CHUNK: usize = 1 << 16;

const SPACES: &[u8; 64] = b"                                                                ";

pub(crate) struct Json<'w> {
    buf: Vec<u8>,
    out: &'w mut dyn Write,
    depth: usize,
    /// The innermost open container has no element yet.
    first: bool,
}

impl<'w> Json<'w> {
    pub fn new(out: &'w mut dyn Write) -> Self {
        Json { buf: Vec::with_capacity(CHUNK + 4096), out, depth: 0, first: true }
    }

    fn newline(&mut self) {
        self.buf.push(b'\n');
        let mut n = 2 * self.depth;
        while n > 0 {
            let k = n.min(SPACES.len());
            self.buf.extend_from_slice(&SPACES[..k]);
            n -= k;
        }
    }

    fn next_element(&mut self) {
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
        self.newline();
    }

    pub fn open_object(&mut self) {
        self.buf.push(b'{');
        self.depth += 1;
        self.first = true;
    }

    pub fn open_array(&mut self) {
        self.buf.push(b'[');
        self.depth += 1;
        self.first = true;
    }

    fn close(&mut self, c: u8) {
        self.depth -= 1;
        if !self.first {
            self.newline();
        }
        self.buf.push(c);
        self.first = false;
    }

    pub fn close_object(&mut self) {
        self.close(b'}');
    }

    pub fn close_array(&mut self) {
        self.close(b']');
    }

    /// Opens a segc document: `{"version": .., "policy": ..` (its other
    /// members follow).
    pub fn open_document(&mut self, version: u32, policy: Option<&str>) {
        self.open_object();
        self.int_field("version", version.into());
        self.key("policy");
        self.opt_string(policy);
    }

    /// The next member's key; its value follows. Keys are the writers' own
    /// constants, none of which needs escaping.
    pub fn key(&mut self, k: &'static str) {
        debug_assert!(!k.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\'), "{k}");
        self.next_element();
        self.buf.push(b'"');
        self.buf.extend_from_slice(k.as_bytes());
        self.buf.extend_from_slice(b"\": ");
    }

    /// The next array element; its value follows.
    pub fn element(&mut self) {
        self.next_element();
    }

    /// A string, escaped as serde_json escapes it.
    pub fn string(&mut self, s: &str) {
        self.buf.push(b'"');
        let bytes = s.as_bytes();
        if !bytes.iter().fold(false, |bad, &b| bad | (b < 0x20) | (b == b'"') | (b == b'\\')) {
            self.buf.extend_from_slice(bytes);
        } else {
            for &b in bytes {
                match b {
                    b'"' => self.buf.extend_from_slice(b"\\\""),
                    b'\\' => self.buf.extend_from_slice(b"\\\\"),
                    b'\n' => self.buf.extend_from_slice(b"\\n"),
                    b'\r' => self.buf.extend_from_slice(b"\\r"),
                    b'\t' => self.buf.extend_from_slice(b"\\t"),
                    0x08 => self.buf.extend_from_slice(b"\\b"),
                    0x0c => self.buf.extend_from_slice(b"\\f"),
                    0..0x20 => {
                        const HEX: &[u8; 16] = b"0123456789abcdef";
                        self.buf.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
                    }
                    _ => self.buf.push(b),
                }
            }
        }
        self.buf.push(b'"');
    }

    pub fn int(&mut self, n: i64) {
        if n < 0 {
            self.buf.push(b'-');
        }
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut v = n.unsigned_abs();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.buf.extend_from_slice(&digits[i..]);
    }

    pub fn null(&mut self) {
        self.buf.extend_from_slice(b"null");
    }

    /// An optional string: `null` when absent.
    pub fn opt_string(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.string(s),
            None => self.null(),
        }
    }

    pub fn str_field(&mut self, k: &'static str, v: &str) {
        self.key(k);
        self.string(v);
    }

    pub fn int_field(&mut self, k: &'static str, v: i64) {
        self.key(k);
        self.int(v);
    }

    /// A list of strings (`[]` when empty).
    pub fn strings(&mut self, items: &[impl AsRef<str>]) {
        self.open_array();
        for s in items {
            self.element();
            self.string(s.as_ref());
        }
        self.close_array();
    }

    pub fn strings_field(&mut self, k: &'static str, items: &[impl AsRef<str>]) {
        self.key(k);
        self.strings(items);
    }

    /// Hands what is buffered to the sink once it is large: call between
    /// elements.
    pub fn flush_if_full(&mut self) -> io::Result<()> {
        if self.buf.len() >= CHUNK {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// The final newline, and everything to the sink.
    pub fn finish(mut self) -> io::Result<()> {
        self.buf.push(b'\n');
        self.out.write_all(&self.buf)?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(f: impl FnOnce(&mut Json<'_>)) -> String {
        let mut out = Vec::new();
        let mut j = Json::new(&mut out);
        f(&mut j);
        j.finish().unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_layout_and_escapes_are_serde_jsons() {
        let hostile = "q\"b\\s\n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f} é ✓";
        let got = written(|j| {
            j.open_object();
            j.str_field("name", hostile);
            j.int_field("neg", -1);
            j.int_field("max", i64::MAX);
            j.int_field("min", i64::MIN);
            j.strings_field("empty", &[] as &[&str]);
            j.strings_field("two", &["a", "b"]);
            j.key("none");
            j.opt_string(None);
            j.key("nested");
            j.open_array();
            j.element();
            j.open_object();
            j.close_object();
            j.element();
            j.open_object();
            j.int_field("deep", 0);
            j.close_object();
            j.close_array();
            j.close_object();
        });
        let v = serde_json::json!({
            "name": hostile, "neg": -1, "max": i64::MAX, "min": i64::MIN, "empty": [], "two": ["a", "b"],
            "none": null, "nested": [{}, {"deep": 0}],
        });
        // serde_json's map sorts keys; write the same order by hand.
        let mut want = Vec::new();
        let mut ser = serde_json::Serializer::pretty(&mut want);
        use serde::ser::{SerializeMap, Serializer};
        let mut m = (&mut ser).serialize_map(None).unwrap();
        for k in ["name", "neg", "max", "min", "empty", "two", "none", "nested"] {
            m.serialize_entry(k, &v[k]).unwrap();
        }
        m.end().unwrap();
        want.push(b'\n');
        assert_eq!(got, String::from_utf8(want).unwrap());
    }
}
