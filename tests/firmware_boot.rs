//! Boots the qemu firmware images (board/firmware.sh) under TCG and checks, from the serial
//! console, that shoal as PID 1 brings the board up, imports the baked-in busybox image,
//! runs containers on cgroup v2 with a memory limit that is really enforced, and powers the
//! VM off cleanly.
//!
//! The images are built when missing (a release cross build: minutes). The VM has a NIC on an
//! empty qemu hub: the guest configures it from `ip=` but can reach nothing.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn image_dir(board: &str) -> PathBuf {
    let dir = repo().join("board/out").join(board);
    // Tests run side by side: one builds the image while the others wait on the lock, then
    // find it complete.
    std::fs::create_dir_all(repo().join("board/out")).unwrap();
    let status = Command::new("flock")
        .arg(repo().join("board/out/.build-lock"))
        .args([
            "sh",
            "-c",
            r#"[ -e "$1/initramfs.cpio.gz" ] && [ -e "$1/run-qemu.sh" ] || "$2" "$3""#,
            "sh",
        ])
        .arg(&dir)
        .arg(repo().join("board/firmware.sh"))
        .arg(board)
        .status()
        .unwrap();
    assert!(status.success(), "board/firmware.sh {board} failed");
    dir
}

/// Boots `board` with `mem_mib` of RAM and the extra kernel words; returns the console text
/// and whether qemu ended by itself (power-off) within `limit`.
fn boot(board: &str, mem_mib: u32, append: &str, limit: Duration) -> (String, bool) {
    boot_with(board, mem_mib, append, limit, &[])
}

fn boot_with(
    board: &str,
    mem_mib: u32,
    append: &str,
    limit: Duration,
    env: &[(&str, &Path)],
) -> (String, bool) {
    let dir = image_dir(board);
    let mut child = Command::new(dir.join("run-qemu.sh"))
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .env("MEM", mem_mib.to_string())
        .env("APPEND", append)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let start = Instant::now();
    let mut exited = false;
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            exited = status.success();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
    }
    let text = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
    (text, exited)
}

/// The seconds-since-kernel-start number in the console line containing `marker`.
fn uptime_at(text: &str, marker: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.contains(marker))?;
    let after = &line[line.find(marker)? + marker.len()..];
    after.split_whitespace().next()?.parse().ok()
}

/// 32 MiB limit: writing 48 MiB into the container's tmpfs /dev/shm cannot succeed (no swap);
/// 128 MiB limit: 16 MiB fits.
const WORDS: &str = "ip=10.0.2.15::10.0.2.2:255.255.255.0:board1:eth0 \
    shoal.autorun=\"run --rm -m 32m busybox sh -c 'echo in-container; cat /proc/self/cgroup; \
    dd if=/dev/zero of=/dev/shm/fill bs=1M count=48 2>/dev/null; echo small-limit-dd=$?'\" \
    shoal.autorun=\"run --rm -m 128m busybox sh -c 'dd if=/dev/zero of=/dev/shm/fill bs=1M count=16 2>/dev/null; echo large-limit-dd=$?'\" \
    shoal.autorun=images \
    shoal.autorun=\"run -d --name idle busybox sh -c 'trap exit TERM; while true; do sleep 1; done'\" \
    shoal.then=poweroff";

fn check_board(board: &str, mem_mib: u32) {
    let (text, powered_off) = boot(board, mem_mib, WORDS, Duration::from_secs(300));
    let shown = || format!("---- console of {board} ----\n{text}");
    assert!(powered_off, "VM did not power off by itself\n{}", shown());
    for needle in [
        "cgroup v2",
        "eth0: 10.0.2.15/24",
        "host board1",
        "loaded busybox.rootfs.tar",
        "in-container",
        "0::/",
        "large-limit-dd=0",
        "stopping containers",
        "stopped 1 containers",
        "1 shims",
        "reboot: Power down",
    ] {
        assert!(text.contains(needle), "console lacks {needle:?}\n{}", shown());
    }
    // The daemon brings its bridge and rules up right after it is ready, before init's
    // background preload: the kernel loads bridge and nf_tables through /sbin/modprobe
    // (shoal), and a failure there would show as an error restoring the network.
    for bad in ["restoring network", "modprobe:", "not in modules.dep"] {
        assert!(!text.contains(bad), "console has {bad:?}\n{}", shown());
    }
    // The 32 MiB container must not have written 48 MiB: dd is killed (or fails), or the
    // whole container is OOM-killed before it can report success.
    assert!(
        !text.contains("small-limit-dd=0"),
        "memory limit not enforced\n{}",
        shown()
    );
    let init = uptime_at(&text, "kernel started init at ").expect("init start time");
    let ready = uptime_at(&text, "daemon ready at ").expect("daemon ready time");
    assert!(ready > init);
    let rss = text.lines().find(|l| l.contains("rss kB:")).unwrap_or("");
    eprintln!("{board} -m {mem_mib}: {rss}");
    eprintln!("{board} -m {mem_mib}: kernel to init {init:.2} s, daemon ready at {ready:.2} s (shoal's share {:.2} s)", ready - init);
}

#[test]
fn x86_64_firmware_runs_a_memory_limited_container_and_powers_off() {
    check_board("qemu/x86_64", 256);
}

#[test]
fn aarch64_firmware_runs_a_memory_limited_container_and_powers_off() {
    check_board("qemu/aarch64-virt", 256);
}

/// 32-bit ARM: the armv7 binary as PID 1 on Debian's multiplatform ARMv7 kernel.
#[test]
fn armv7_firmware_runs_a_memory_limited_container_and_powers_off() {
    check_board("qemu/armv7-virt", 256);
}

#[test]
fn x86_64_firmware_works_in_128_mib() {
    check_board("qemu/x86_64", 128);
}

/// The state partition (`shoal.data=`) keeps images across a power cycle: the second boot
/// finds busybox already there and does not import it again. Power-off must leave the ext4
/// file system clean (it is synced and remounted read-only), which fsck checks.
#[test]
fn x86_64_state_partition_survives_a_power_cycle() {
    let disk = std::env::temp_dir().join(format!("shoal-fw-data-{}.img", std::process::id()));
    let f = std::fs::File::create(&disk).unwrap();
    f.set_len(256 << 20).unwrap();
    drop(f);
    let mkfs = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&disk)
        .status()
        .expect("e2fsprogs");
    assert!(mkfs.success());
    let words = "shoal.data=/dev/vda shoal.autorun=images shoal.then=poweroff";
    let env = [("DISK", disk.as_path())];
    let (first, off1) = boot_with("qemu/x86_64", 256, words, Duration::from_secs(180), &env);
    assert!(off1, "first boot did not power off\n{first}");
    assert!(
        first.contains("state in /var/lib/shoal on /dev/vda (ext4)"),
        "{first}"
    );
    assert!(first.contains("loaded busybox.rootfs.tar"), "{first}");
    let fsck = Command::new("e2fsck")
        .args(["-n", "-f"])
        .arg(&disk)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "file system not clean after power-off: {}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    // The second boot is powered off by the user's command, `shoal system poweroff`.
    let words = "shoal.data=/dev/vda shoal.autorun=images shoal.autorun=\"system poweroff\"";
    let (second, off2) = boot_with("qemu/x86_64", 256, words, Duration::from_secs(180), &env);
    assert!(off2, "second boot did not power off\n{second}");
    assert!(second.contains("autorun: shoal system poweroff"), "{second}");
    assert!(
        !second.contains("loaded busybox.rootfs.tar"),
        "imported twice\n{second}"
    );
    let listed = second
        .lines()
        .any(|l| l.starts_with("busybox") && l.contains("latest"));
    assert!(listed, "busybox image lost across the power cycle\n{second}");
    std::fs::remove_file(&disk).unwrap();
}

/// The same firmware with BusyBox as PID 1 (BUSYBOX_INIT=1 board/firmware.sh): its inittab
/// starts shoal through rootfs/etc/init.d/S60shoal at sysinit, the image's self-test checks
/// the API, `status`, `stop` and `start`, and BusyBox's shutdown action stops the daemon
/// before the power-off.
#[test]
fn x86_64_busybox_init_runs_the_init_d_script() {
    let dir = repo().join("board/out/qemu/x86_64-busybox-init");
    // Under the same lock as the other builds: they share the download cache.
    std::fs::create_dir_all(repo().join("board/out")).unwrap();
    let status = Command::new("flock")
        .arg(repo().join("board/out/.build-lock"))
        .args([
            "sh",
            "-c",
            r#"[ -e "$1/initramfs.cpio.gz" ] && [ -e "$1/run-qemu.sh" ] || BUSYBOX_INIT=1 "$2" qemu/x86_64"#,
            "sh",
        ])
        .arg(&dir)
        .arg(repo().join("board/firmware.sh"))
        .status()
        .unwrap();
    assert!(
        status.success(),
        "BUSYBOX_INIT=1 board/firmware.sh qemu/x86_64 failed"
    );
    let mut child = Command::new(dir.join("run-qemu.sh"))
        .env("MEM", "256")
        .env("APPEND", "rdinit=/sbin/init")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    });
    let start = Instant::now();
    let mut powered_off = false;
    while start.elapsed() < Duration::from_secs(180) {
        if let Some(status) = child.try_wait().unwrap() {
            powered_off = status.success();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if !powered_off {
        let _ = child.kill();
    }
    let _ = child.wait();
    let text = reader.join().unwrap();
    assert!(powered_off, "VM did not power off by itself\n{text}");
    // In order: sysinit start, the self-test's steps, the shutdown action.
    let mut rest = text.as_str();
    for needle in [
        "Starting shoal: OK",
        "bbinit: api answers",
        "shoal is running (pid ",
        "bbinit: status=0",
        "Stopping shoal: OK",
        "shoal is stopped",
        "bbinit: status-after-stop=3",
        "Starting shoal: OK",
        "bbinit: api answers after restart",
        "bbinit: powering off",
        "Stopping shoal: OK",
        "reboot: Power down",
    ] {
        match rest.find(needle) {
            Some(i) => rest = &rest[i + needle.len()..],
            None => panic!("console lacks {needle:?} (in order)\n{text}"),
        }
    }
    assert!(!text.contains("bbinit: socket left behind"), "{text}");
    assert!(
        !text.contains("shoal-init:"),
        "shoal init ran instead of BusyBox init\n{text}"
    );
}

#[test]
fn console_times_are_parsed() {
    let t = "shoal-init: kernel started init at 3.25 s\nshoal-init: daemon ready at 4.18 s since\n";
    assert_eq!(uptime_at(t, "kernel started init at "), Some(3.25));
    assert_eq!(uptime_at(t, "daemon ready at "), Some(4.18));
    assert_eq!(uptime_at(t, "missing"), None);
    let _ = Path::new("/");
}
