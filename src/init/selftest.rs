//! `shoal self-test`: a quick check, without root or a kernel of the right kind, that the
//! binary built for a board runs its pure logic correctly there (run under qemu-user after
//! a cross build). Each check compares against a result worked out by hand.

use super::{check_config, cmdline, config, modules};

fn check(name: &str, ok: bool, failures: &mut Vec<String>) {
    if !ok {
        failures.push(name.to_string());
    }
}

/// Runs the checks; prints one line per failure; returns 0 when all pass.
pub fn main(_args: &[String]) -> i32 {
    let mut failures = Vec::new();
    let p = cmdline::parse("ip=192.168.1.20::192.168.1.1:255.255.255.0:b1:eth0 shoal.autorun=\"run 'a b'\"");
    check(
        "cmdline ip=",
        matches!(&p.ip, Some(cmdline::IpConfig::Static(s)) if s.prefix_len == 24 && s.gateway.is_some()),
        &mut failures,
    );
    check("cmdline autorun", p.autorun == [["run", "a b"]], &mut failures);
    let c = config::parse("root = \"/data\"\nstop_timeout = 3\n[init]\nhostname = 'x'\n");
    check(
        "config.toml",
        matches!(&c, Ok(c) if c.root == std::path::Path::new("/data") && c.stop_timeout == 3),
        &mut failures,
    );
    check(
        "config.toml error",
        config::parse("bogus = 1").is_err(),
        &mut failures,
    );
    let kc = check_config::parse_kernel_config("CONFIG_VETH=m\nCONFIG_NET_NS=y\n# CONFIG_VXLAN is not set\n");
    check("kernel config", kc.len() == 2, &mut failures);
    let deps = modules::parse_modules_dep("a.ko: b.ko\nb.ko:\n");
    check(
        "modules.dep",
        modules::load_order(&deps, &["a"]).0 == ["b.ko", "a.ko"],
        &mut failures,
    );
    let sum = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(b"abc");
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    check(
        "sha256",
        sum == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        &mut failures,
    );
    let json: Result<serde_json::Value, _> = serde_json::from_str("{\"Id\":\"x\",\"n\":[1,2]}");
    check("json", matches!(&json, Ok(v) if v["n"][1] == 2), &mut failures);
    if failures.is_empty() {
        println!("self-test ok ({} bits, {})", usize::BITS, std::env::consts::ARCH);
        0
    } else {
        for f in &failures {
            println!("self-test FAILED: {f}");
        }
        1
    }
}
