//! The device allow-list as a cgroup v2 device program (eBPF, BPF_PROG_TYPE_CGROUP_DEVICE):
//! v2 has no `devices.allow` file, so the same policy as v1's list is compiled into a small
//! program the kernel runs on every open and mknod of a device node. Creating any node is
//! allowed (as Docker allows `mknod`); reading or writing is allowed only for the standard
//! nodes: null, zero, full, random, urandom, tty, console, ptmx, the ptys and tun.

/// One eBPF instruction (the kernel's `struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// dst in the low nibble, src in the high nibble.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

const LDX_MEM_W: u8 = 0x61;
const ALU64_MOV_K: u8 = 0xb7;
const ALU64_MOV_X: u8 = 0xbf;
const ALU64_AND_K: u8 = 0x57;
const ALU64_RSH_K: u8 = 0x77;
const JMP_JNE_K: u8 = 0x55;
const JMP_JEQ_K: u8 = 0x15;
const EXIT: u8 = 0x95;

/// `bpf_cgroup_dev_ctx.access_type` low half: the device type.
pub const TYPE_BLOCK: i32 = 1;
pub const TYPE_CHAR: i32 = 2;
/// High half: the access.
pub const ACCESS_MKNOD: i32 = 1;
pub const ACCESS_READ: i32 = 2;
pub const ACCESS_WRITE: i32 = 4;

/// Character devices (major, minor; None = any minor) open for reading and writing.
pub const ALLOWED_CHAR: [(i32, Option<i32>); 10] = [
    (1, Some(3)),
    (1, Some(5)),
    (1, Some(7)),
    (1, Some(8)),
    (1, Some(9)),
    (5, Some(0)),
    (5, Some(1)),
    (5, Some(2)),
    (136, None),
    (10, Some(200)),
];

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

/// The program: r1 points at {access_type, major, minor}; returns 1 to allow, 0 to deny.
pub fn program() -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0), // r2 = access_type
        insn(ALU64_MOV_X, 3, 2, 0, 0),
        insn(ALU64_AND_K, 3, 0, 0, 0xffff), // r3 = type
        insn(ALU64_RSH_K, 2, 0, 0, 16),     // r2 = access
        insn(LDX_MEM_W, 4, 1, 4, 0),        // r4 = major
        insn(LDX_MEM_W, 5, 1, 8, 0),        // r5 = minor
        insn(ALU64_AND_K, 2, 0, 0, !ACCESS_MKNOD & 0xffff),
        // Only mknod requested: allowed for any device.
        insn(JMP_JEQ_K, 2, 0, 0, 0),
    ];
    let allow_at_end = p.len() - 1;
    for (major, minor) in ALLOWED_CHAR {
        let checks: i16 = if minor.is_some() { 3 } else { 2 };
        // Each failed check skips the rest of this rule: the remaining checks plus the
        // two-instruction "allow" tail.
        p.push(insn(JMP_JNE_K, 3, 0, checks - 1 + 2, TYPE_CHAR));
        p.push(insn(JMP_JNE_K, 4, 0, checks - 2 + 2, major));
        if let Some(minor) = minor {
            p.push(insn(JMP_JNE_K, 5, 0, 2, minor));
        }
        p.push(insn(ALU64_MOV_K, 0, 0, 0, 1));
        p.push(insn(EXIT, 0, 0, 0, 0));
    }
    p.push(insn(ALU64_MOV_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p.push(insn(ALU64_MOV_K, 0, 0, 0, 1));
    p.push(insn(EXIT, 0, 0, 0, 0));
    // Point the mknod-only jump at the final "allow".
    let target = p.len() - 2;
    p[allow_at_end].off = (target - allow_at_end - 1) as i16;
    p
}

/// Encode for the bpf(2) system call.
pub fn encode(program: &[Insn]) -> Vec<u64> {
    program
        .iter()
        .map(|i| {
            u64::from(i.code)
                | u64::from(i.regs) << 8
                | u64::from(i.off as u16) << 16
                | u64::from(i.imm as u32) << 32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Interpret the program on a device access, as the kernel would.
    fn run(p: &[Insn], access: i32, kind: i32, major: i32, minor: i32) -> i64 {
        let ctx = [(access << 16 | kind) as u32, major as u32, minor as u32];
        let mut r = [0i64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_MEM_W => r[dst] = ctx[i.off as usize / 4] as i64,
                ALU64_MOV_K => r[dst] = i.imm as i64,
                ALU64_MOV_X => r[dst] = r[src],
                ALU64_AND_K => r[dst] &= i.imm as i64,
                ALU64_RSH_K => r[dst] = ((r[dst] as u64) >> i.imm) as i64,
                JMP_JNE_K => {
                    if r[dst] != i.imm as i64 {
                        pc = (pc as i64 + i.off as i64) as usize
                    }
                }
                JMP_JEQ_K => {
                    if r[dst] == i.imm as i64 {
                        pc = (pc as i64 + i.off as i64) as usize
                    }
                }
                EXIT => return r[0],
                other => panic!("opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn standard_nodes_open_disks_do_not_but_mknod_does() {
        let p = program();
        let rw = ACCESS_READ | ACCESS_WRITE;
        assert_eq!(run(&p, rw, TYPE_CHAR, 1, 3), 1, "/dev/null");
        assert_eq!(run(&p, ACCESS_READ, TYPE_CHAR, 136, 7), 1, "/dev/pts/7");
        assert_eq!(run(&p, ACCESS_READ, TYPE_CHAR, 5, 2), 1, "/dev/ptmx");
        assert_eq!(run(&p, ACCESS_READ, TYPE_BLOCK, 254, 0), 0, "a disk");
        assert_eq!(
            run(&p, ACCESS_READ, TYPE_BLOCK, 1, 3),
            0,
            "block 1:3 is not /dev/null"
        );
        assert_eq!(run(&p, ACCESS_WRITE, TYPE_CHAR, 1, 1), 0, "/dev/mem");
        assert_eq!(run(&p, ACCESS_READ, TYPE_CHAR, 10, 201), 0);
        assert_eq!(run(&p, ACCESS_MKNOD, TYPE_BLOCK, 254, 0), 1, "mknod is allowed");
        assert_eq!(run(&p, ACCESS_MKNOD | ACCESS_READ, TYPE_BLOCK, 254, 0), 0);
    }

    #[test]
    fn encoding_matches_the_kernel_layout() {
        let e = encode(&[insn(LDX_MEM_W, 2, 1, 4, 0), insn(ALU64_MOV_K, 0, 0, 0, -1)]);
        assert_eq!(e[0], 0x61 | 0x12 << 8 | 4 << 16);
        assert_eq!(e[1], 0xb7 | 0xffff_ffff << 32);
    }
}
