//! Detach keys (`Ctrl-P Ctrl-Q` by default): the daemon watches an attached client's input
//! for the sequence, as dockerd does, so any client (docker's CLI too) can detach without
//! stopping the container. Pure: bytes in, bytes to forward and a verdict out.

/// Parse docker's `--detach-keys` syntax: `ctrl-p,ctrl-q`, `ctrl-@`, single characters `a`.
pub fn parse_keys(spec: &str) -> Result<Vec<u8>, String> {
    let mut keys = Vec::new();
    for part in spec.split(',') {
        let p = part.trim();
        let key = if let Some(c) = p.strip_prefix("ctrl-") {
            let b = match c.as_bytes() {
                [b] if b.is_ascii_lowercase() => b - b'a' + 1,
                [b'@'] => 0,
                [b'['] => 27,
                [b'\\'] => 28,
                [b']'] => 29,
                [b'^'] => 30,
                [b'_'] => 31,
                _ => return Err(format!("invalid detach key {p:?}")),
            };
            b
        } else if p.len() == 1 {
            p.as_bytes()[0]
        } else {
            return Err(format!("invalid detach key {p:?}"));
        };
        keys.push(key);
    }
    if keys.is_empty() {
        return Err("empty detach key sequence".into());
    }
    Ok(keys)
}

/// Scans input for the detach sequence, holding back a partial match until it is decided.
pub struct DetachScanner {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachScanner {
    pub fn new(keys: Vec<u8>) -> Self {
        DetachScanner { keys, matched: 0 }
    }

    /// Feed input; returns the bytes to forward and whether the sequence completed (input
    /// after it is dropped, as the client is leaving).
    pub fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return (out, true);
                }
            } else {
                // The held-back prefix was ordinary input after all.
                out.extend_from_slice(&self.keys[..self.matched]);
                self.matched = 0;
                if b == self.keys[0] {
                    self.matched = 1;
                    if self.keys.len() == 1 {
                        return (out, true);
                    }
                } else {
                    out.push(b);
                }
            }
        }
        (out, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_key_specs() {
        assert_eq!(parse_keys("ctrl-p,ctrl-q").unwrap(), vec![16, 17]);
        assert_eq!(parse_keys("ctrl-@,a").unwrap(), vec![0, b'a']);
        assert!(parse_keys("ctrl-1").is_err());
        assert!(parse_keys("shift-a").is_err());
    }

    #[test]
    fn detects_sequence_across_reads_and_forwards_the_rest() {
        let mut s = DetachScanner::new(vec![16, 17]);
        assert_eq!(s.feed(b"ls\n"), (b"ls\n".to_vec(), false));
        assert_eq!(s.feed(&[b'a', 16]), (b"a".to_vec(), false));
        assert_eq!(s.feed(&[17, b'x']), (vec![], true));
    }

    #[test]
    fn a_broken_prefix_is_forwarded() {
        let mut s = DetachScanner::new(vec![16, 17]);
        assert_eq!(s.feed(&[16, b'z']), (vec![16, b'z'], false));
        assert_eq!(s.feed(&[16, 16, 17]), (vec![16], true));
    }
}
