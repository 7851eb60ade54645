//! Parsing of the kernel command line into the boot parameters shoal's init acts on.
//!
//! Pure: takes the text of /proc/cmdline and returns typed values; malformed words are
//! reported as warnings, never as panics, so a typo on the command line still boots.
//!
//! Words understood:
//! - `ip=<client>:<server>:<gateway>:<netmask>:<hostname>:<device>:<autoconf>` (the kernel's
//!   nfsroot syntax; `ip=dhcp` and `ip=:::::DEV:dhcp` ask for DHCP),
//! - `shoal.hostname=NAME`, `shoal.data=/dev/vdX` (persistent partition for the state root),
//! - `shoal.autorun="run --rm busybox echo hi"` (a shoal client command run once the daemon
//!   is ready; single quotes group words; may be given several times, run in order) and
//!   `shoal.then=poweroff|reboot` (after the last one).

use std::net::Ipv4Addr;

/// A static IPv4 configuration of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticIp {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub hostname: Option<String>,
    /// Interface name; `None` means the first non-loopback interface.
    pub device: Option<String>,
}

/// How the LAN interface gets its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpConfig {
    Static(StaticIp),
    Dhcp { device: Option<String> },
}

/// What to do once the autorun command has finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAutorun {
    Stay,
    PowerOff,
    Reboot,
}

/// Everything init takes from the kernel command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootParams {
    pub ip: Option<IpConfig>,
    pub hostname: Option<String>,
    pub data_device: Option<String>,
    pub autorun: Vec<Vec<String>>,
    pub after_autorun: AfterAutorun,
    pub warnings: Vec<String>,
}

/// Splits the command line as the kernel does: on white space, with double quotes grouping
/// (the quotes themselves are dropped).
pub fn split_kernel_words(cmdline: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut in_word = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            c => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(current);
    }
    words
}

/// Splits a command into words: white space separates, single or double quotes group,
/// a backslash escapes the next character. Unbalanced quotes are an error.
pub fn split_command(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => current.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '\\') => {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            (None, c) => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if let Some(q) = quote {
        return Err(format!("unbalanced {q} in {text:?}"));
    }
    if in_word {
        words.push(current);
    }
    Ok(words)
}

/// Parses a netmask given either as dotted quad (`255.255.255.0`) or as prefix length (`24`).
pub fn parse_netmask(text: &str) -> Result<u8, String> {
    if let Ok(len) = text.parse::<u8>() {
        if len <= 32 {
            return Ok(len);
        }
        return Err(format!("prefix length {len} is larger than 32"));
    }
    let mask: Ipv4Addr = text
        .parse()
        .map_err(|_| format!("netmask {text:?} is neither a prefix nor a dotted quad"))?;
    let bits = u32::from(mask);
    let len = bits.leading_ones();
    if bits.checked_shl(len).unwrap_or(0) != 0 {
        return Err(format!("netmask {text} has holes"));
    }
    Ok(len as u8)
}

/// Parses the value of `ip=`.
pub fn parse_ip(value: &str) -> Result<IpConfig, String> {
    let fields: Vec<&str> = value.split(':').collect();
    let field = |i: usize| fields.get(i).copied().filter(|f| !f.is_empty());
    if matches!(value, "dhcp" | "on" | "any" | "both") {
        return Ok(IpConfig::Dhcp { device: None });
    }
    if fields.len() >= 7 && matches!(fields[6], "dhcp" | "on" | "any" | "both") && field(0).is_none() {
        return Ok(IpConfig::Dhcp {
            device: field(5).map(str::to_string),
        });
    }
    let address_text = field(0).ok_or_else(|| format!("ip={value}: no client address"))?;
    let address: Ipv4Addr = address_text
        .parse()
        .map_err(|_| format!("ip={value}: bad client address {address_text:?}"))?;
    let gateway = match field(2) {
        Some(g) => Some(g.parse().map_err(|_| format!("ip={value}: bad gateway {g:?}"))?),
        None => None,
    };
    let prefix_len = match field(3) {
        Some(m) => parse_netmask(m).map_err(|e| format!("ip={value}: {e}"))?,
        None => 24,
    };
    Ok(IpConfig::Static(StaticIp {
        address,
        prefix_len,
        gateway,
        hostname: field(4).map(str::to_string),
        device: field(5).map(str::to_string),
    }))
}

/// Parses the whole command line.
pub fn parse(cmdline: &str) -> BootParams {
    let mut params = BootParams {
        ip: None,
        hostname: None,
        data_device: None,
        autorun: Vec::new(),
        after_autorun: AfterAutorun::Stay,
        warnings: Vec::new(),
    };
    for word in split_kernel_words(cmdline) {
        let (key, value) = match word.split_once('=') {
            Some(kv) => kv,
            None => continue,
        };
        match key {
            "ip" => match parse_ip(value) {
                Ok(ip) => params.ip = Some(ip),
                Err(e) => params.warnings.push(e),
            },
            "shoal.hostname" => params.hostname = Some(value.to_string()),
            "shoal.data" => params.data_device = Some(value.to_string()),
            "shoal.autorun" => match split_command(value) {
                Ok(words) if !words.is_empty() => params.autorun.push(words),
                Ok(_) => params.warnings.push("shoal.autorun is empty".to_string()),
                Err(e) => params.warnings.push(format!("shoal.autorun: {e}")),
            },
            "shoal.then" => match value {
                "poweroff" => params.after_autorun = AfterAutorun::PowerOff,
                "reboot" => params.after_autorun = AfterAutorun::Reboot,
                "stay" => params.after_autorun = AfterAutorun::Stay,
                other => params
                    .warnings
                    .push(format!("shoal.then={other}: expected poweroff, reboot or stay")),
            },
            _ => {}
        }
    }
    if params.hostname.is_none() {
        if let Some(IpConfig::Static(s)) = &params.ip {
            params.hostname = s.hostname.clone();
        }
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_words_keep_quoted_spaces() {
        let w = split_kernel_words("console=ttyS0 shoal.autorun=\"run --rm busybox echo hi\" quiet");
        assert_eq!(
            w,
            vec!["console=ttyS0", "shoal.autorun=run --rm busybox echo hi", "quiet"]
        );
    }

    #[test]
    fn static_ip_with_gateway_mask_host_and_device() {
        let ip = parse_ip("10.0.2.15::10.0.2.2:255.255.255.0:board1:eth0").unwrap();
        assert_eq!(
            ip,
            IpConfig::Static(StaticIp {
                address: Ipv4Addr::new(10, 0, 2, 15),
                prefix_len: 24,
                gateway: Some(Ipv4Addr::new(10, 0, 2, 2)),
                hostname: Some("board1".into()),
                device: Some("eth0".into()),
            })
        );
    }

    #[test]
    fn static_ip_prefix_and_defaults() {
        let IpConfig::Static(s) = parse_ip("192.168.7.2:::16").unwrap() else {
            panic!("not static")
        };
        assert_eq!(s.prefix_len, 16);
        assert_eq!(s.gateway, None);
        assert_eq!(s.device, None);
    }

    #[test]
    fn dhcp_forms() {
        assert_eq!(parse_ip("dhcp").unwrap(), IpConfig::Dhcp { device: None });
        assert_eq!(
            parse_ip(":::::eth1:dhcp").unwrap(),
            IpConfig::Dhcp {
                device: Some("eth1".into())
            }
        );
    }

    #[test]
    fn bad_ip_values_are_errors_not_panics() {
        assert!(parse_ip("").is_err());
        assert!(parse_ip("10.0.0.300").is_err());
        assert!(parse_ip("10.0.0.1::nope").is_err());
        assert!(parse_ip("10.0.0.1:::255.0.255.0").is_err());
        assert!(parse_ip("10.0.0.1:::33").is_err());
    }

    #[test]
    fn netmask_forms() {
        assert_eq!(parse_netmask("255.255.255.0").unwrap(), 24);
        assert_eq!(parse_netmask("0.0.0.0").unwrap(), 0);
        assert_eq!(parse_netmask("255.255.255.255").unwrap(), 32);
        assert_eq!(parse_netmask("8").unwrap(), 8);
    }

    #[test]
    fn command_split_with_quotes() {
        assert_eq!(
            split_command("run --rm -m 64m busybox sh -c 'echo a b; cat /x'").unwrap(),
            vec![
                "run",
                "--rm",
                "-m",
                "64m",
                "busybox",
                "sh",
                "-c",
                "echo a b; cat /x"
            ]
        );
        assert_eq!(split_command("a\\ b ''").unwrap(), vec!["a b", ""]);
        assert!(split_command("echo 'open").is_err());
    }

    #[test]
    fn whole_command_line() {
        let p = parse(
            "console=ttyS0 ip=10.0.0.2::10.0.0.1:24:b2:eth0 shoal.data=/dev/vdb \
             shoal.autorun=\"run --rm busybox echo 'hi there'\" shoal.then=poweroff ip=bogus \
             shoal.autorun=ps",
        );
        assert!(matches!(p.ip, Some(IpConfig::Static(_))));
        assert_eq!(p.hostname.as_deref(), Some("b2"));
        assert_eq!(p.data_device.as_deref(), Some("/dev/vdb"));
        assert_eq!(
            p.autorun,
            vec![vec!["run", "--rm", "busybox", "echo", "hi there"], vec!["ps"]]
        );
        assert_eq!(p.after_autorun, AfterAutorun::PowerOff);
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    }
}
