//! Batched map access: `BPF_MAP_LOOKUP_BATCH` and `BPF_MAP_UPDATE_BATCH`
//! (Linux 5.6) read or write thousands of
//! entries per system call instead of one. aya 0.14 has no batch API, so these are the raw commands. A kernel
//! or map type without them answers `EINVAL`/`EOPNOTSUPP` before touching
//! anything; the caller then falls back to one entry per call.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use aya::maps::MapData;
use aya::Pod;

use crate::Error;

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
/// The kernel's own `ENOTSUPP` (not in libc): what some map types answer.
const ENOTSUPP: i32 = 524;
/// Entries per call: bounds the kernel's copy of keys and values.
const CHUNK: usize = 8192;

/// The `batch` member of `union bpf_attr` (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// What a batch call did.
#[derive(Debug, PartialEq, Eq)]
pub enum Batched {
    /// Every entry was written (or removed).
    Done,
    /// This kernel or map type has no batch command; nothing was done.
    Unsupported,
}

/// Runs one batch command on `attr`; the error when the kernel refused or
/// stopped early (`attr.count` then says how far it got).
///
/// # Safety
/// Every pointer in `attr` is null or points at memory alive for the call and
/// sized for `attr.count` entries of the map's key and value sizes (tokens:
/// for one key), readable, and writable where the command writes (lookup).
unsafe fn bpf(cmd: libc::c_long, attr: &mut BatchAttr) -> Option<io::Error> {
    // SAFETY: `attr` is the batch member of bpf_attr, passed with its size (the
    // kernel zero-extends a shorter attr); the caller vouches for its pointers.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut BatchAttr, std::mem::size_of::<BatchAttr>() as u32) };
    (r < 0).then(io::Error::last_os_error)
}

/// The handle's own descriptor: opening another by id would need
/// CAP_SYS_ADMIN, which the agent has dropped.
fn raw_fd(map: &MapData) -> u32 {
    map.fd().as_fd().as_raw_fd() as u32
}

fn unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) | Some(ENOTSUPP))
}

fn run(
    map: &MapData,
    cmd: libc::c_long,
    n: usize,
    key_size: usize,
    keys: *const u8,
    values: Option<(*const u8, usize)>,
) -> Result<Batched, Error> {
    let map_fd = raw_fd(map);
    let mut done = 0;
    while done < n {
        let count = (n - done).min(CHUNK);
        // SAFETY (pointer arithmetic): `done < n`, so both offsets stay inside
        // the slices the public functions took these pointers from.
        let (k, v) = unsafe { (keys.add(done * key_size), values.map_or(std::ptr::null(), |(p, size)| p.add(done * size))) };
        let mut attr = BatchAttr { keys: k as u64, values: v as u64, count: count as u32, map_fd, ..BatchAttr::default() };
        // SAFETY: `k` (and `v` when not null) point at `count` keys (values)
        // inside the caller's slices; the kernel only reads them.
        let err = unsafe { bpf(cmd, &mut attr) };
        let did = attr.count as usize;
        if let Some(e) = err {
            if done == 0 && did == 0 && unsupported(&e) {
                return Ok(Batched::Unsupported);
            }
            return Err(Error::Other(format!("batch map {}: {e} after {} of {n} entries", "update", done + did)));
        }
        debug_assert_eq!(did, count, "a batch call that succeeds did every entry");
        done += count;
    }
    Ok(Batched::Done)
}

/// Every key of a hash map (`V` is its value type), or `None` when this kernel
/// or map type cannot read in batches.
pub fn keys<K: Pod, V: Pod>(map: &MapData) -> Result<Option<Vec<K>>, Error> {
    let (ks, vs) = (std::mem::size_of::<K>(), std::mem::size_of::<V>());
    let mut keys: Vec<u8> = Vec::new();
    let (mut kbuf, mut vbuf) = (vec![0u8; CHUNK * ks], vec![0u8; CHUNK * vs]);
    // The resume token: a bucket number for hash maps; sized for any map.
    let (mut token_in, mut token_out) = (vec![0u8; ks.max(8)], vec![0u8; ks.max(8)]);
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { token_in.as_mut_ptr() as u64 },
            out_batch: token_out.as_mut_ptr() as u64,
            keys: kbuf.as_mut_ptr() as u64,
            values: vbuf.as_mut_ptr() as u64,
            count: CHUNK as u32,
            map_fd: raw_fd(map),
            ..BatchAttr::default()
        };
        // SAFETY: the kernel writes up to `count` keys and values into `kbuf`
        // and `vbuf` (sized for CHUNK entries) and one token into `token_out`,
        // and reads `token_in` (both sized for any token).
        let err = unsafe { bpf(BPF_MAP_LOOKUP_BATCH, &mut attr) };
        let got = (attr.count as usize).min(CHUNK);
        keys.extend_from_slice(&kbuf[..got * ks]);
        match err {
            None => {}
            // ENOENT: the walk is over (the last entries came with it).
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
            Some(e) if first && got == 0 && unsupported(&e) => return Ok(None),
            Some(e) => return Err(Error::Other(format!("batch map lookup: {e} after {} entries", keys.len() / ks))),
        }
        std::mem::swap(&mut token_in, &mut token_out);
        first = false;
    }
    // SAFETY: `keys` holds whole keys as the kernel wrote them, and K is
    // plain old data (aya::Pod): any bytes of its size are a valid K.
    Ok(Some(keys.chunks_exact(ks).map(|c| unsafe { std::ptr::read_unaligned(c.as_ptr().cast::<K>()) }).collect()))
}

/// Writes `keys[i] -> values[i]` for every i (flags 0: create or replace).
pub fn update<K: Pod, V: Pod>(map: &MapData, keys: &[K], values: &[V]) -> Result<Batched, Error> {
    assert_eq!(keys.len(), values.len(), "one value per key");
    if keys.is_empty() {
        return Ok(Batched::Done);
    }
    let values = (values.as_ptr().cast::<u8>(), std::mem::size_of::<V>());
    run(map, BPF_MAP_UPDATE_BATCH, keys.len(), std::mem::size_of::<K>(), keys.as_ptr().cast(), Some(values))
}

/// Writes one entry (flags 0: create or replace): the fallback where the
/// kernel has no batch commands.
pub fn update_one<K: Pod, V: Pod>(map: &MapData, key: &K, value: &V) -> Result<(), Error> {
    const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
    #[repr(C)]
    struct ElemAttr {
        map_fd: u32,
        pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    let mut attr = ElemAttr { map_fd: raw_fd(map), pad: 0, key: key as *const K as u64, value: value as *const V as u64, flags: 0 };
    // SAFETY: the elem member of bpf_attr, passed with its size; key and value
    // point at live values of the map's key and value sizes, only read.
    let r =
        unsafe { libc::syscall(libc::SYS_bpf, BPF_MAP_UPDATE_ELEM, &mut attr as *mut ElemAttr, std::mem::size_of::<ElemAttr>() as u32) };
    if r < 0 {
        return Err(Error::Other(format!("map update: {}", io::Error::last_os_error())));
    }
    Ok(())
}
