//! Putting segc's programs on an interface's hooks, checking from the kernel
//! that they are still there, and taking them off.
//!
//! Ingress: native or generic XDP (Ethernet links), or TC; egress: TC. TC is
//! TCX where the kernel has it (6.6+), attached first among the interface's
//! programs; else a clsact qdisc with segc's cls_bpf filter at priority 1, the
//! first of the chain. Either way a passed packet is handed on to what
//! follows. L3 links (no Ethernet header) get TC both ways, with the programs
//! that read the IP version from `skb->protocol`.

use std::path::{Path, PathBuf};

use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions};
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode};
use segc_runtime_bpf as rt;
use serde::{Deserialize, Serialize};

use super::netdev::{self, LinkKind};
use super::netlink;
use crate::Error;

/// A hook segc's program runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hook {
    XdpNative,
    XdpGeneric,
    /// TCX, first among the interface's programs (Linux 6.6+).
    Tcx,
    /// A clsact qdisc and a cls_bpf filter at priority 1 (before TCX).
    TcClsact,
}

impl Hook {
    pub fn text(self) -> &'static str {
        match self {
            Hook::XdpNative => "XDP (native)",
            Hook::XdpGeneric => "XDP (generic)",
            Hook::Tcx => "TCX (first)",
            Hook::TcClsact => "tc clsact (cls_bpf, priority 1)",
        }
    }
}

/// How one interface is attached: recorded beside the pins, checked against
/// the kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attached {
    pub ifindex: u32,
    pub l3: bool,
    pub ingress: Hook,
    pub egress: Hook,
    /// clsact filters: (priority, handle) on ingress and egress.
    #[serde(default)]
    pub clsact_in: Option<(u16, u32)>,
    #[serde(default)]
    pub clsact_out: Option<(u16, u32)>,
}

/// The pinned programs, reopened.
pub struct Progs {
    xdp: Xdp,
    tc_out: SchedClassifier,
    tc_in: SchedClassifier,
    l3_in: SchedClassifier,
    l3_out: SchedClassifier,
}

pub const PROG_PINS: [(&str, &str); 5] = [
    (rt::names::XDP, "prog_xdp"),
    (rt::names::TC, "prog_tc"),
    (rt::names::TC_INGRESS, "prog_tc_ingress"),
    (rt::names::TC_L3_INGRESS, "prog_tc_l3_in"),
    (rt::names::TC_L3_EGRESS, "prog_tc_l3_out"),
];

impl Progs {
    pub fn open(dir: &Path) -> Result<Progs, Error> {
        Ok(Progs {
            xdp: Xdp::from_pin(dir.join("prog_xdp"), aya_obj::programs::XdpAttachType::Interface)?,
            tc_out: SchedClassifier::from_pin(dir.join("prog_tc"))?,
            tc_in: SchedClassifier::from_pin(dir.join("prog_tc_ingress"))?,
            l3_in: SchedClassifier::from_pin(dir.join("prog_tc_l3_in"))?,
            l3_out: SchedClassifier::from_pin(dir.join("prog_tc_l3_out"))?,
        })
    }

    fn tc(&mut self, l3: bool, ty: TcAttachType) -> &mut SchedClassifier {
        match (l3, ty) {
            (true, TcAttachType::Ingress) => &mut self.l3_in,
            (true, _) => &mut self.l3_out,
            (false, TcAttachType::Ingress) => &mut self.tc_in,
            (false, _) => &mut self.tc_out,
        }
    }

    /// The kernel's id of the program on a TC hook.
    fn tc_id(&self, l3: bool, ingress: bool) -> Result<u32, Error> {
        let p = match (l3, ingress) {
            (true, true) => &self.l3_in,
            (true, false) => &self.l3_out,
            (false, true) => &self.tc_in,
            (false, false) => &self.tc_out,
        };
        Ok(p.info()?.id())
    }
}

pub fn link_pin(dir: &Path, iface: &str, ingress: bool) -> PathBuf {
    dir.join(format!("link_{}_{iface}", if ingress { "in" } else { "out" }))
}

fn pin_link(link: FdLink, path: PathBuf) -> Result<(), Error> {
    link.pin(&path).map(|_| ()).map_err(|e| Error::Other(format!("cannot pin {}: {e}", path.display())))
}

/// Attaches a TC program first on its hook: TCX, or a clsact filter at
/// priority 1. Returns the hook and, for clsact, the filter's priority and handle.
fn attach_tc(p: &mut SchedClassifier, dir: &Path, iface: &str, ty: TcAttachType, tcx: bool) -> Result<(Hook, Option<(u16, u32)>), Error> {
    let ingress = matches!(ty, TcAttachType::Ingress);
    if tcx {
        let id = p.attach_with_options(iface, ty, TcAttachOptions::TcxOrder(LinkOrder::first()))?;
        let link: FdLink = p.take_link(id)?.try_into().map_err(|e| Error::Other(format!("tc link: {e}")))?;
        pin_link(link, link_pin(dir, iface, ingress))?;
        return Ok((Hook::Tcx, None));
    }
    if let Err(e) = tc::qdisc_add_clsact(iface) {
        let exists = matches!(&e, tc::TcError::NetlinkError(n) if n.raw_os_error() == Some(libc::EEXIST));
        if !exists {
            return Err(Error::Other(format!("cannot add the clsact qdisc to `{iface}`: {e}")));
        }
    }
    let opts = NlOptions { priority: 1, ..NlOptions::default() };
    let id = p.attach_with_options(iface, ty, TcAttachOptions::Netlink(opts))?;
    let link = p.take_link(id)?;
    let (prio, handle) = (link.priority()?, u32::from(link.handle()?));
    // The filter stays in the kernel after segc exits: do not let the handle's
    // drop detach it. Undeploy removes it by priority and handle.
    std::mem::forget(link);
    Ok((Hook::TcClsact, Some((prio, handle))))
}

/// The ingress hook for an interface.
pub fn ingress_hook(choice: super::XdpChoice, iface: &str, in_netns: bool, kind: LinkKind, tcx: bool) -> Hook {
    use super::XdpChoice;
    let tc = if tcx { Hook::Tcx } else { Hook::TcClsact };
    if kind == LinkKind::L3 {
        return tc; // no Ethernet header for the XDP program to parse
    }
    match choice {
        XdpChoice::Native => Hook::XdpNative,
        XdpChoice::Generic => Hook::XdpGeneric,
        XdpChoice::Tc => tc,
        // /sys shows the host's devices, not a netns's: there, assume virtual.
        XdpChoice::Auto if !in_netns && Path::new("/sys/class/net").join(iface).join("device").exists() => Hook::XdpNative,
        XdpChoice::Auto => tc,
    }
}

/// Attaches both ways to `iface`.
pub fn attach(p: &mut Progs, dir: &Path, iface: &str, want: Hook, tcx: bool) -> Result<Attached, Error> {
    let kind = netdev::link_kind(iface)?;
    let ifindex = netdev::ifindex(iface)?;
    let l3 = kind == LinkKind::L3;
    let (ingress, clsact_in) = match want {
        Hook::XdpNative | Hook::XdpGeneric => {
            let mode = if want == Hook::XdpNative { XdpMode::Driver } else { XdpMode::Skb };
            let (id, used) = match p.xdp.attach(iface, mode) {
                Ok(id) => (id, want),
                Err(e) if want == Hook::XdpNative => {
                    // Native XDP is not supported by this driver: fall back, loudly.
                    eprintln!("warning: native XDP failed on `{iface}` ({e}); using generic XDP");
                    (p.xdp.attach(iface, XdpMode::Skb)?, Hook::XdpGeneric)
                }
                Err(e) => return Err(e.into()),
            };
            let link: FdLink = p.xdp.take_link(id)?.try_into().map_err(|e| Error::Other(format!("xdp link: {e}")))?;
            pin_link(link, link_pin(dir, iface, true))?;
            (used, None)
        }
        Hook::Tcx | Hook::TcClsact => attach_tc(p.tc(l3, TcAttachType::Ingress), dir, iface, TcAttachType::Ingress, tcx)?,
    };
    let (egress, clsact_out) = attach_tc(p.tc(l3, TcAttachType::Egress), dir, iface, TcAttachType::Egress, tcx)?;
    Ok(Attached { ifindex, l3, ingress, egress, clsact_in, clsact_out })
}

/// What the kernel says of an interface's filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Attached,
    /// Not attached (or not first), and why.
    Missing(String),
    /// The kernel could not be asked (and why): nothing is concluded.
    Unknown(String),
}

/// Why an interface's filter is not attached as recorded, from the kernel;
/// `None` when it is.
pub fn check(p: &Progs, dir: &Path, iface: &str, a: &Attached) -> Option<String> {
    match status(p, dir, iface, a) {
        Status::Attached => None,
        Status::Missing(why) | Status::Unknown(why) => Some(why),
    }
}

/// [`check`], telling "not attached" from "could not ask".
pub fn status(p: &Progs, dir: &Path, iface: &str, a: &Attached) -> Status {
    match check_inner(p, dir, iface, a) {
        None => Status::Attached,
        Some(why) if why.starts_with("cannot ") => Status::Unknown(why),
        Some(why) => Status::Missing(why),
    }
}

fn check_inner(p: &Progs, dir: &Path, iface: &str, a: &Attached) -> Option<String> {
    let now = match netdev::ifindex(iface) {
        Ok(i) => i,
        Err(_) => return Some(format!("interface `{iface}` does not exist")),
    };
    if now != a.ifindex {
        return Some(format!("interface `{iface}` was created again (index {}, now {now}): the filter went with the old one", a.ifindex));
    }
    for (ingress, hook, clsact) in [(true, a.ingress, a.clsact_in), (false, a.egress, a.clsact_out)] {
        let side = if ingress { "ingress" } else { "egress" };
        match hook {
            Hook::XdpNative | Hook::XdpGeneric | Hook::Tcx => match netdev::link_ifindex(&link_pin(dir, iface, ingress)) {
                Ok(Some(i)) if i == now => {
                    if hook == Hook::Tcx {
                        let ty = if ingress { netdev::BPF_TCX_INGRESS } else { netdev::BPF_TCX_EGRESS };
                        let ours = p.tc_id(a.l3, ingress).ok();
                        match netdev::tcx_programs(now, ty) {
                            Ok(ids) if ids.first().copied() == ours => {}
                            Ok(_) => return Some(format!("segc's {side} program on `{iface}` is not first")),
                            Err(e) => return Some(format!("cannot list the {side} programs of `{iface}`: {e}")),
                        }
                    }
                }
                Ok(_) => return Some(format!("the {side} link of `{iface}` is detached")),
                Err(e) => return Some(format!("the {side} link of `{iface}` is missing: {e}")),
            },
            Hook::TcClsact => {
                let parent = if ingress { netlink::CLSACT_INGRESS } else { netlink::CLSACT_EGRESS };
                let ours = p.tc_id(a.l3, ingress).ok();
                match netlink::bpf_filters(now, parent) {
                    Ok(f) if f.first().map(|f| Some(f.prog_id)) == Some(ours) && clsact.is_some() => {}
                    Ok(f) if f.iter().any(|f| Some(f.prog_id) == ours) => {
                        return Some(format!("segc's {side} filter on `{iface}` is not first"))
                    }
                    Ok(_) => return Some(format!("segc's {side} filter on `{iface}` is gone")),
                    Err(e) => return Some(format!("cannot read the {side} filters of `{iface}`: {e}")),
                }
            }
        }
    }
    None
}

/// Takes segc's programs off an interface (what is left of them).
pub fn detach(dir: &Path, iface: &str, a: &Attached) {
    for ingress in [true, false] {
        let p = link_pin(dir, iface, ingress);
        if p.exists() {
            // Taking the pinned link and dropping it detaches it.
            match PinnedLink::from_pin(&p) {
                Ok(link) => {
                    let _ = link.unpin();
                }
                Err(_) => {
                    let _ = std::fs::remove_file(&p);
                }
            }
        }
    }
    for (ty, clsact) in [(TcAttachType::Ingress, a.clsact_in), (TcAttachType::Egress, a.clsact_out)] {
        if let Some((prio, handle)) = clsact {
            if let Ok(link) = SchedClassifierLink::attached(iface, ty, prio, tc::TcHandle::from(handle), None) {
                let _ = aya::programs::Link::detach(link);
            }
        }
    }
}
