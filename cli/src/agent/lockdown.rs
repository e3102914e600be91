//! Least privilege for the agent: every capability but CAP_BPF and
//! CAP_NET_ADMIN dropped, no_new_privs, and a seccomp allow-list.

use anyhow::{bail, Context, Result};

const CAP_NET_ADMIN: u32 = 12;
const CAP_BPF: u32 = 39;

/// Keeps CAP_BPF and CAP_NET_ADMIN, drops every other capability (effective,
/// permitted, inheritable and the bounding set) and sets no_new_privs, for
/// the calling thread and the threads it spawns from now on.
pub fn drop_privileges() -> Result<()> {
    keep_only(&[CAP_NET_ADMIN, CAP_BPF])
}

/// Drops every capability of the calling thread (a thread that only talks
/// to the network, such as the fleet's etcd client) and sets no_new_privs.
pub fn drop_all_privileges() -> Result<()> {
    keep_only(&[])
}

fn keep_only(keep: &[u32]) -> Result<()> {
    // SAFETY: prctl calls with constant arguments.
    unsafe {
        for cap in 0..64u32 {
            if !keep.contains(&cap) {
                libc::prctl(libc::PR_CAPBSET_DROP, u64::from(cap), 0, 0, 0);
            }
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            bail!("cannot set no_new_privs: {}", std::io::Error::last_os_error());
        }
    }
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let keep_lo: u32 = keep.iter().filter(|&&c| c < 32).map(|&c| 1u32 << c).sum();
    let keep_hi: u32 = keep.iter().filter(|&&c| c >= 32).map(|&c| 1u32 << (c - 32)).sum();
    let header = Header { version: 0x2008_0522, pid: 0 };
    let data =
        [Data { effective: keep_lo, permitted: keep_lo, inheritable: 0 }, Data { effective: keep_hi, permitted: keep_hi, inheritable: 0 }];
    // SAFETY: capset with a v3 header and two data words, as the kernel expects.
    let r = unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) };
    if r != 0 {
        bail!("cannot drop capabilities: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// The system calls the agent makes once it runs (measured with strace over
/// deploy, reload, refusal, deny sampling, scrapes and SIGTERM, plus what the
/// runtime needs for threads, signals, panics and the audit log's rotation).
const ALLOWED_SYSCALLS: &[libc::c_long] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_readv,
    libc::SYS_openat,
    libc::SYS_close,
    libc::SYS_lseek,
    libc::SYS_statx,
    libc::SYS_newfstatat,
    libc::SYS_fstat,
    libc::SYS_readlink,
    libc::SYS_readlinkat,
    libc::SYS_getdents64,
    libc::SYS_fcntl,
    libc::SYS_ioctl,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_flock,
    libc::SYS_rename,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_unlink,
    libc::SYS_unlinkat,
    libc::SYS_mkdir,
    libc::SYS_mkdirat,
    libc::SYS_ftruncate,
    libc::SYS_access,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_bpf,
    libc::SYS_socket,
    libc::SYS_accept4,
    libc::SYS_accept,
    libc::SYS_recvfrom,
    libc::SYS_sendto,
    libc::SYS_recvmsg,
    libc::SYS_sendmsg,
    libc::SYS_setsockopt,
    libc::SYS_getsockopt,
    libc::SYS_getsockname,
    libc::SYS_shutdown,
    libc::SYS_poll,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_brk,
    libc::SYS_futex,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_clock_gettime,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getrandom,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_tgkill,
    libc::SYS_rseq,
    libc::SYS_set_robust_list,
    libc::SYS_prctl,
    libc::SYS_capget,
    libc::SYS_capset,
    libc::SYS_uname,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_restart_syscall,
    libc::SYS_prlimit64,
    // Paths (resolved before lockdown, but libraries may still ask), the
    // audit log's atomic writes (HEAD, ANCHOR: fchmod, link for new files).
    libc::SYS_getcwd,
    libc::SYS_fchmod,
    libc::SYS_linkat,
    libc::SYS_fstatfs,
    // A swap updates the five outer maps from threads of its own (their RCU
    // waits overlap); namespaces cannot be made without the capabilities dropped.
    libc::SYS_clone,
    libc::SYS_clone3,
    // Netlink for interface changes, and epoll/poll waits; the fleet's etcd
    // client (tonic over tokio) connects, and wakes its runtime by eventfd.
    libc::SYS_bind,
    libc::SYS_connect,
    libc::SYS_getpeername,
    libc::SYS_eventfd2,
    libc::SYS_pipe2,
    libc::SYS_ppoll,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
];

/// Installs the seccomp allow-list on every thread: any other system call
/// kills the process (SIGSYS).
pub fn install_seccomp() -> Result<()> {
    use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};
    let rules = ALLOWED_SYSCALLS.iter().map(|&n| (n, vec![])).collect();
    let arch = if cfg!(target_arch = "aarch64") { TargetArch::aarch64 } else { TargetArch::x86_64 };
    let filter = SeccompFilter::new(rules, SeccompAction::KillProcess, SeccompAction::Allow, arch).context("seccomp filter")?;
    let prog: BpfProgram = filter.try_into().context("seccomp filter")?;
    seccompiler::apply_filter_all_threads(&prog).context("cannot install the seccomp filter")?;
    Ok(())
}

/// The capability sets of this process, from /proc (hex masks).
pub fn capabilities() -> Vec<(String, String)> {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("Cap") || l.starts_with("NoNewPrivs"))
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.to_string(), v.trim().to_string())))
        .collect()
}
