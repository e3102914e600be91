//! What the kernel says about an interface and a pinned link: the
//! interface's index and link type (Ethernet, or an L3 device whose packets
//! start at their IP header), and the interface a pinned link is attached to
//! now. Attachment is always read from the kernel, never inferred from a pin.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::Error;

/// How a link frames packets, as segc reads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkKind {
    /// Ethernet (and loopback, veth, bridges, macvlan, TAP, VLAN devices).
    Ethernet,
    /// No link-layer header: TUN, WireGuard, ipip, gre, sit, ip6tnl, ppp.
    L3,
}

/// `ARPHRD_*` values (include/uapi/linux/if_arp.h).
const ARPHRD_ETHER: u16 = 1;
const ARPHRD_LOOPBACK: u16 = 772;
const ARPHRD_PPP: u16 = 512;
const ARPHRD_RAWIP: u16 = 519;
const ARPHRD_TUNNEL: u16 = 768;
const ARPHRD_TUNNEL6: u16 = 769;
const ARPHRD_SIT: u16 = 776;
const ARPHRD_IPGRE: u16 = 778;
const ARPHRD_IP6GRE: u16 = 823;
const ARPHRD_NONE: u16 = 0xfffe;

pub fn valid_name(what: &str, n: &str) -> Result<(), Error> {
    let ok =
        !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b)) && n != "." && n != "..";
    if ok {
        Ok(())
    } else {
        Err(Error::Other(format!("invalid {what} name `{n}`")))
    }
}

/// The interface's index now, in this thread's network namespace.
pub fn ifindex(iface: &str) -> Result<u32, Error> {
    valid_name("interface", iface)?;
    let c = CString::new(iface).map_err(|_| Error::Other(format!("invalid interface name `{iface}`")))?;
    // SAFETY: if_nametoindex reads a NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(Error::Other(format!("interface `{iface}` does not exist")));
    }
    Ok(i)
}

/// The interface's link type (its hardware address family, `SIOCGIFHWADDR`),
/// or an error naming it when segc cannot parse its frames.
pub fn link_kind(iface: &str) -> Result<LinkKind, Error> {
    ifindex(iface)?;
    // SAFETY: a datagram socket only to ask the kernel about the interface.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(Error::Other(format!("socket: {}", std::io::Error::last_os_error())));
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned here.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero ifreq is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(iface.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR fills the ifreq we pass, sized as the kernel expects.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) } != 0 {
        return Err(Error::Other(format!("cannot read the link type of `{iface}`: {}", std::io::Error::last_os_error())));
    }
    // SAFETY: SIOCGIFHWADDR sets the hardware address member of the union.
    let family = unsafe { req.ifr_ifru.ifru_hwaddr.sa_family };
    match family {
        ARPHRD_ETHER | ARPHRD_LOOPBACK => Ok(LinkKind::Ethernet),
        ARPHRD_NONE | ARPHRD_PPP | ARPHRD_RAWIP | ARPHRD_TUNNEL | ARPHRD_TUNNEL6 | ARPHRD_SIT | ARPHRD_IPGRE | ARPHRD_IP6GRE => {
            Ok(LinkKind::L3)
        }
        other => Err(Error::Other(format!(
            "interface `{iface}` has link type {other} (ARPHRD), whose frames segc cannot parse: refused, nothing attached \
             (segc filters Ethernet links and L3 links such as TUN, WireGuard, ipip, gre, sit and ppp)"
        ))),
    }
}

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// Opens a pinned object.
fn obj_get(path: &Path) -> Result<OwnedFd, Error> {
    #[repr(C)]
    struct Attr {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
    }
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| Error::Other("pin path with a NUL".into()))?;
    let mut attr = Attr { pathname: c.as_ptr() as u64, bpf_fd: 0, file_flags: 0 };
    // SAFETY: the obj member of bpf_attr, with a NUL-terminated path alive for the call.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_GET, &mut attr as *mut Attr, std::mem::size_of::<Attr>() as u32) };
    if fd < 0 {
        return Err(Error::Other(format!("cannot open {}: {}", path.display(), std::io::Error::last_os_error())));
    }
    // SAFETY: the kernel returned a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The interface a pinned XDP or TCX link is attached to now: `None` when the
/// interface it was attached to is gone (the kernel detached the link).
pub fn link_ifindex(pin: &Path) -> Result<Option<u32>, Error> {
    let fd = obj_get(pin)?;
    // struct bpf_link_info: type, id, prog_id, then (8-aligned) the union whose
    // xdp and tcx members both start with the ifindex.
    let mut info = [0u64; 16];
    #[repr(C)]
    struct Attr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let mut attr = Attr { bpf_fd: fd.as_raw_fd() as u32, info_len: std::mem::size_of_val(&info) as u32, info: info.as_mut_ptr() as u64 };
    // SAFETY: the info member of bpf_attr; the kernel writes at most info_len bytes into `info`.
    let r = unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_GET_INFO_BY_FD, &mut attr as *mut Attr, std::mem::size_of::<Attr>() as u32) };
    if r < 0 {
        return Err(Error::Other(format!("cannot read link {}: {}", pin.display(), std::io::Error::last_os_error())));
    }
    let ifindex = (info[2] & 0xffff_ffff) as u32;
    Ok((ifindex != 0).then_some(ifindex))
}

const BPF_PROG_QUERY: libc::c_long = 16;
pub const BPF_TCX_INGRESS: u32 = 46;
pub const BPF_TCX_EGRESS: u32 = 47;

/// The ids of the programs on an interface's TCX hook, in the order they
/// run; `Err` when the kernel has no TCX. Program ids only: no descriptor is
/// opened by id (that needs CAP_SYS_ADMIN, which the agent has dropped).
pub fn tcx_programs(ifindex: u32, attach_type: u32) -> Result<Vec<u32>, Error> {
    #[repr(C)]
    #[derive(Default)]
    struct Query {
        target_ifindex: u32,
        attach_type: u32,
        query_flags: u32,
        attach_flags: u32,
        prog_ids: u64,
        prog_cnt: u32,
        pad: u32,
        prog_attach_flags: u64,
        link_ids: u64,
        link_attach_flags: u64,
        revision: u64,
    }
    let mut ids = [0u32; 64];
    let mut q =
        Query { target_ifindex: ifindex, attach_type, prog_ids: ids.as_mut_ptr() as u64, prog_cnt: ids.len() as u32, ..Query::default() };
    // SAFETY: the query member of bpf_attr; the kernel writes at most prog_cnt ids into `ids`.
    let r = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_QUERY, &mut q as *mut Query, std::mem::size_of::<Query>() as u32) };
    if r < 0 {
        return Err(Error::Other(format!("TCX query: {}", std::io::Error::last_os_error())));
    }
    Ok(ids[..(q.prog_cnt as usize).min(ids.len())].to_vec())
}
