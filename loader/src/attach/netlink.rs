//! The tc filters of an interface's clsact hook, read over rtnetlink
//! (`RTM_GETTFILTER` dump): which BPF programs are attached there, at which
//! priority. Used where TCX is missing (before Linux 6.6) to check, from the
//! kernel, that segc's filter is attached and first.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::Error;

const NETLINK_ROUTE: i32 = 0;
const RTM_GETTFILTER: u16 = 46;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TCA_BPF_ID: u16 = 11;

/// The clsact hook: `parent` of its ingress and egress filters.
pub const CLSACT_INGRESS: u32 = 0xffff_fff2;
pub const CLSACT_EGRESS: u32 = 0xffff_fff3;

/// A BPF filter on a clsact hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filter {
    pub priority: u16,
    pub handle: u32,
    pub prog_id: u32,
}

#[repr(C)]
struct Request {
    len: u32,
    ty: u16,
    flags: u16,
    seq: u32,
    pid: u32,
    family: u8,
    pad1: u8,
    pad2: u16,
    ifindex: i32,
    handle: u32,
    parent: u32,
    info: u32,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Netlink attributes in `b`: (type, payload).
fn attrs(b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= b.len() {
        let len = u16_at(b, at) as usize;
        if len < 4 || at + len > b.len() {
            break;
        }
        out.push((u16_at(b, at + 2) & 0x3fff, &b[at + 4..at + len]));
        at += (len + 3) & !3;
    }
    out
}

/// The BPF filters on `ifindex`'s clsact hook `parent`, in priority order.
pub fn bpf_filters(ifindex: u32, parent: u32) -> Result<Vec<Filter>, Error> {
    let err = |what: &str| Error::Other(format!("netlink {what}: {}", std::io::Error::last_os_error()));
    // SAFETY: a netlink socket, owned below.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, NETLINK_ROUTE) };
    if fd < 0 {
        return Err(err("socket"));
    }
    // SAFETY: a fresh descriptor we own.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let req = Request {
        len: std::mem::size_of::<Request>() as u32,
        ty: RTM_GETTFILTER,
        flags: NLM_F_REQUEST | NLM_F_DUMP,
        seq: 1,
        pid: 0,
        family: libc::AF_UNSPEC as u8,
        pad1: 0,
        pad2: 0,
        ifindex: ifindex as i32,
        handle: 0,
        parent,
        info: 0,
    };
    // SAFETY: sends the request struct, sized as given.
    let sent = unsafe { libc::send(sock.as_raw_fd(), (&req as *const Request).cast(), req.len as usize, 0) };
    if sent < 0 {
        return Err(err("send"));
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: receives into our buffer, at most its length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(err("recv"));
        }
        let mut at = 0;
        let n = n as usize;
        while at + 16 <= n {
            let len = u32_at(&buf, at) as usize;
            let ty = u16_at(&buf, at + 4);
            if len < 16 || at + len > n {
                return Ok(out);
            }
            match ty {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => {
                    let code = u32_at(&buf, at + 16) as i32;
                    // No clsact qdisc (or no interface) is no filter at all.
                    if code == 0 || code == -libc::EINVAL || code == -libc::ENOENT || code == -libc::ENODEV {
                        return Ok(out);
                    }
                    return Err(Error::Other(format!("netlink: {}", std::io::Error::from_raw_os_error(-code))));
                }
                _ => {
                    let msg = &buf[at + 16..at + len];
                    if msg.len() >= 20 {
                        let (handle, info) = (u32_at(msg, 8), u32_at(msg, 16));
                        let mut kind_bpf = false;
                        let mut prog_id = 0;
                        for (t, v) in attrs(&msg[20..]) {
                            match t {
                                TCA_KIND => kind_bpf = v.starts_with(b"bpf"),
                                TCA_OPTIONS => {
                                    for (t, v) in attrs(v) {
                                        if t == TCA_BPF_ID && v.len() >= 4 {
                                            prog_id = u32_at(v, 0);
                                        }
                                    }
                                }
                                _ => {}
                            }
                        }
                        if kind_bpf && prog_id != 0 {
                            out.push(Filter { priority: (info >> 16) as u16, handle, prog_id });
                        }
                    }
                }
            }
            at += (len + 3) & !3;
        }
    }
}
