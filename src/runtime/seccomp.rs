//! A small seccomp filter in classic BPF: default-allow, with Docker's notable denials
//! answering EPERM (module loading, kexec, keyrings, bpf, perf, mount and namespace calls
//! unless the container holds the capability Docker would require for them).
//!
//! The filter first checks the architecture field, so a syscall made through another ABI
//! (i386 or x32 on x86_64) cannot slip past a table written for the native one; such calls
//! get EPERM as well. The syscall tables are per architecture (x86_64, aarch64, armv7): the
//! numbers come from the libc crate compiled for that target, the choice of names is here.

use super::caps;

/// One classic-BPF instruction (the kernel's `struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const JSET_K: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K

/// Actions a filter can return.
pub const RET_ALLOW: u32 = 0x7fff_0000;
pub const RET_ERRNO: u32 = 0x0005_0000;

const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
/// Low 32 bits of args[0] (all supported targets are little-endian).
const OFFSET_ARG0_LO: u32 = 16;

/// Namespace flags of clone(2): creating namespaces needs CAP_SYS_ADMIN, as in Docker.
const CLONE_NAMESPACE_FLAGS: u32 = 0x7E02_0000;

/// The audit architecture this build's syscall table describes.
#[cfg(target_arch = "x86_64")]
pub const NATIVE_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
pub const NATIVE_ARCH: u32 = 0xC000_00B7;
#[cfg(target_arch = "arm")]
pub const NATIVE_ARCH: u32 = 0x4000_0028;

/// x32 syscalls on x86_64 carry this bit in their number.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: Option<u32> = Some(0x4000_0000);
#[cfg(not(target_arch = "x86_64"))]
const X32_SYSCALL_BIT: Option<u32> = None;

/// Which capability, when held, lifts a denial (None: always denied).
type Gate = Option<&'static str>;

macro_rules! table {
    ($($name:ident => $gate:expr),* $(,)?) => {
        &[$((stringify!($name), libc::$name as u32, $gate)),*]
    };
}

/// Denied syscalls present on every supported architecture: (name, number, gate).
fn common_denials() -> &'static [(&'static str, u32, Gate)] {
    table![
        SYS_add_key => None,
        SYS_keyctl => None,
        SYS_request_key => None,
        SYS_userfaultfd => None,
        SYS_nfsservctl => None,
        SYS_init_module => Some("SYS_MODULE"),
        SYS_finit_module => Some("SYS_MODULE"),
        SYS_delete_module => Some("SYS_MODULE"),
        SYS_kexec_load => Some("SYS_BOOT"),
        SYS_kexec_file_load => Some("SYS_BOOT"),
        SYS_reboot => Some("SYS_BOOT"),
        SYS_bpf => Some("SYS_ADMIN"),
        SYS_perf_event_open => Some("SYS_ADMIN"),
        SYS_fanotify_init => Some("SYS_ADMIN"),
        SYS_lookup_dcookie => Some("SYS_ADMIN"),
        SYS_mount => Some("SYS_ADMIN"),
        SYS_umount2 => Some("SYS_ADMIN"),
        SYS_pivot_root => Some("SYS_ADMIN"),
        SYS_fsopen => Some("SYS_ADMIN"),
        SYS_fsconfig => Some("SYS_ADMIN"),
        SYS_fsmount => Some("SYS_ADMIN"),
        SYS_fspick => Some("SYS_ADMIN"),
        SYS_move_mount => Some("SYS_ADMIN"),
        SYS_open_tree => Some("SYS_ADMIN"),
        SYS_setns => Some("SYS_ADMIN"),
        SYS_unshare => Some("SYS_ADMIN"),
        SYS_swapon => Some("SYS_ADMIN"),
        SYS_swapoff => Some("SYS_ADMIN"),
        SYS_quotactl => Some("SYS_ADMIN"),
        SYS_name_to_handle_at => Some("SYS_ADMIN"),
        SYS_open_by_handle_at => Some("DAC_READ_SEARCH"),
        SYS_acct => Some("SYS_PACCT"),
        SYS_settimeofday => Some("SYS_TIME"),
        SYS_clock_settime => Some("SYS_TIME"),
        SYS_clock_adjtime => Some("SYS_TIME"),
        SYS_ptrace => Some("SYS_PTRACE"),
        SYS_process_vm_readv => Some("SYS_PTRACE"),
        SYS_process_vm_writev => Some("SYS_PTRACE"),
        SYS_kcmp => Some("SYS_PTRACE"),
        SYS_syslog => Some("SYSLOG"),
        SYS_get_mempolicy => Some("SYS_NICE"),
        SYS_set_mempolicy => Some("SYS_NICE"),
        SYS_mbind => Some("SYS_NICE"),
        SYS_move_pages => Some("SYS_NICE"),
    ]
}

/// Denied syscalls that exist only on some architectures.
#[cfg(target_arch = "x86_64")]
fn arch_denials() -> &'static [(&'static str, u32, Gate)] {
    table![
        SYS_iopl => Some("SYS_RAWIO"),
        SYS_ioperm => Some("SYS_RAWIO"),
        SYS_uselib => None,
        SYS_ustat => None,
        SYS_sysfs => None,
        SYS__sysctl => None,
    ]
}
#[cfg(target_arch = "arm")]
fn arch_denials() -> &'static [(&'static str, u32, Gate)] {
    table![SYS_uselib => None, SYS_ustat => None, SYS_sysfs => None, SYS__sysctl => None]
}
#[cfg(target_arch = "aarch64")]
fn arch_denials() -> &'static [(&'static str, u32, Gate)] {
    &[]
}

/// The syscall numbers this build denies to a process holding capability mask `caps`.
pub fn denied(cap_mask: u64) -> Vec<(&'static str, u32)> {
    let held = |gate: Gate| {
        gate.and_then(caps::number)
            .is_some_and(|n| cap_mask & caps::bit(n) != 0)
    };
    common_denials()
        .iter()
        .chain(arch_denials())
        .filter(|(_, _, gate)| !held(*gate))
        .map(|(name, nr, _)| (*name, *nr))
        .collect()
}

/// Build the filter program for a process that will hold capability mask `cap_mask`.
pub fn program(cap_mask: u64) -> Vec<Insn> {
    let stmt = |code, k| Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |code, k, jt, jf| Insn { code, jt, jf, k };
    let eperm = RET_ERRNO | libc::EPERM as u32;
    let enosys = RET_ERRNO | libc::ENOSYS as u32;
    let mut p = vec![
        stmt(LD_W_ABS, OFFSET_ARCH),
        jump(JEQ_K, NATIVE_ARCH, 1, 0),
        stmt(RET_K, eperm),
        stmt(LD_W_ABS, OFFSET_NR),
    ];
    if let Some(bit) = X32_SYSCALL_BIT {
        p.push(jump(JGE_K, bit, 0, 1));
        p.push(stmt(RET_K, eperm));
    }
    for (_, nr) in denied(cap_mask) {
        p.push(jump(JEQ_K, nr, 0, 1));
        p.push(stmt(RET_K, eperm));
    }
    // clone3 passes its flags in memory a filter cannot read: answer ENOSYS so libc falls back
    // to clone(2), whose flags are checked below (Docker does the same).
    let sys_admin = caps::number("SYS_ADMIN").is_some_and(|n| cap_mask & caps::bit(n) != 0);
    if !sys_admin {
        p.push(jump(JEQ_K, libc::SYS_clone3 as u32, 0, 1));
        p.push(stmt(RET_K, enosys));
        p.push(jump(JEQ_K, libc::SYS_clone as u32, 0, 3));
        p.push(stmt(LD_W_ABS, OFFSET_ARG0_LO));
        p.push(jump(JSET_K, CLONE_NAMESPACE_FLAGS, 0, 1));
        p.push(stmt(RET_K, eperm));
    }
    p.push(stmt(RET_K, RET_ALLOW));
    p
}

/// The program in the kernel's representation.
pub fn to_kernel(program: &[Insn]) -> Vec<libc::sock_filter> {
    program
        .iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run `prog` on a seccomp_data (nr, arch, args[0]) like the kernel would.
    fn run(prog: &[Insn], nr: u32, arch: u32, arg0: u64) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        data[16..24].copy_from_slice(&arg0.to_le_bytes());
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = prog[pc];
            pc += 1;
            match i.code {
                LD_W_ABS => {
                    let o = i.k as usize;
                    acc = u32::from_le_bytes(data[o..o + 4].try_into().unwrap());
                }
                RET_K => return i.k,
                JEQ_K | JGE_K | JSET_K => {
                    let taken = match i.code {
                        JEQ_K => acc == i.k,
                        JGE_K => acc >= i.k,
                        _ => acc & i.k != 0,
                    };
                    pc += if taken { i.jt } else { i.jf } as usize;
                }
                other => panic!("unknown opcode {other:#x}"),
            }
        }
    }

    fn default_caps() -> u64 {
        caps::resolve(false, &[], &[], 40).unwrap()
    }

    #[test]
    fn denies_keyrings_and_modules_allows_ordinary_calls() {
        let p = program(default_caps());
        let eperm = RET_ERRNO | libc::EPERM as u32;
        assert_eq!(run(&p, libc::SYS_keyctl as u32, NATIVE_ARCH, 0), eperm);
        assert_eq!(run(&p, libc::SYS_init_module as u32, NATIVE_ARCH, 0), eperm);
        assert_eq!(run(&p, libc::SYS_mount as u32, NATIVE_ARCH, 0), eperm);
        assert_eq!(run(&p, libc::SYS_getpid as u32, NATIVE_ARCH, 0), RET_ALLOW);
        assert_eq!(run(&p, libc::SYS_write as u32, NATIVE_ARCH, 0), RET_ALLOW);
    }

    #[test]
    fn foreign_architecture_is_refused() {
        let p = program(default_caps());
        assert_eq!(
            run(&p, libc::SYS_getpid as u32, 0x4000_0003, 0),
            RET_ERRNO | libc::EPERM as u32
        );
    }

    #[test]
    fn clone_with_namespace_flags_needs_sys_admin() {
        let clone = libc::SYS_clone as u32;
        let p = program(default_caps());
        assert_eq!(run(&p, clone, NATIVE_ARCH, libc::SIGCHLD as u64), RET_ALLOW);
        let newns = (libc::CLONE_NEWNS | libc::SIGCHLD) as u64;
        assert_eq!(run(&p, clone, NATIVE_ARCH, newns), RET_ERRNO | libc::EPERM as u32);
        let admin = program(default_caps() | caps::bit(caps::number("SYS_ADMIN").unwrap()));
        assert_eq!(run(&admin, clone, NATIVE_ARCH, newns), RET_ALLOW);
        assert_eq!(run(&admin, libc::SYS_mount as u32, NATIVE_ARCH, 0), RET_ALLOW);
        assert_eq!(
            run(&admin, libc::SYS_keyctl as u32, NATIVE_ARCH, 0),
            RET_ERRNO | libc::EPERM as u32
        );
    }

    #[test]
    fn jumps_stay_in_range() {
        for p in [program(0), program(u64::MAX)] {
            assert_eq!(p.last().map(|i| i.code), Some(RET_K));
            for (pc, i) in p.iter().enumerate().filter(|(_, i)| i.code != RET_K) {
                assert!(
                    pc + 1 + (i.jt.max(i.jf) as usize) < p.len(),
                    "jump out of program at {pc}"
                );
            }
        }
    }
}
