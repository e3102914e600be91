//! The compiler's hash maps: keyed by names, ids and addresses, looked up
//! millions of times in a large policy. foldhash is seeded per process like
//! the standard library's SipHash (iteration order is no more stable, and
//! crafted keys cannot be precomputed), and several times faster on short
//! keys. Nothing may depend on iteration order: outputs are sorted.

pub type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
