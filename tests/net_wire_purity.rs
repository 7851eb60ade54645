//! The pure codecs under src/wire must not do I/O: no smol, no rustix, no std::fs.

use std::fs;
use std::path::Path;

#[test]
fn wire_modules_import_no_io() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/wire");
    let mut checked = 0;
    for entry in fs::read_dir(&dir).expect("src/wire exists") {
        let path = entry.expect("readable dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let source = fs::read_to_string(&path).expect("readable source");
        // Code only: the module docs may name what they avoid.
        let text: String = source
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for forbidden in [
            "smol::",
            "rustix::",
            "std::fs",
            "use smol",
            "use rustix",
            "libc::",
            "std::net::UdpSocket",
            "std::net::TcpStream",
        ] {
            assert!(!text.contains(forbidden), "{} uses {forbidden}", path.display());
        }
        checked += 1;
    }
    assert!(
        checked >= 2,
        "expected dns.rs and netlink.rs in {}",
        dir.display()
    );
}
