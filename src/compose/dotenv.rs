//! `.env` and `env_file` parsing with compose's quoting rules.
//!
//! - `KEY=value`, optional `export ` prefix, `#` comment lines, blank lines.
//! - unquoted: trimmed; ` #` starts a comment; `${VAR}` is interpolated.
//! - `'single'`: literal, may span lines, nothing expanded.
//! - `"double"`: `\n \r \t \\ \" \$` escapes, `${VAR}` interpolated, may span lines.
//!
//! `${VAR}` reads `lookup` (the shell) first, then variables defined earlier in the file,
//! as compose does: the shell environment wins everywhere.

use super::interpolate::{interpolate, Env};

/// Parses `text`; errors name the line.
pub fn parse(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut line = 1;
    while i < chars.len() {
        // One logical line: skip leading blanks.
        while i < chars.len() && (chars[i] == ' ' || chars[i] == '\t') {
            i += 1;
        }
        if i >= chars.len() {
            break;
        }
        if chars[i] == '\n' || chars[i] == '\r' {
            if chars[i] == '\n' {
                line += 1;
            }
            i += 1;
            continue;
        }
        if chars[i] == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        let start_line = line;
        let key_start = i;
        while i < chars.len() && chars[i] != '=' && chars[i] != '\n' {
            i += 1;
        }
        let mut key: String = chars[key_start..i].iter().collect::<String>().trim().to_string();
        if let Some(rest) = key.strip_prefix("export ") {
            key = rest.trim().to_string();
        }
        if i >= chars.len() || chars[i] != '=' {
            return Err(format!("line {start_line}: expected KEY=VALUE, found {key:?}"));
        }
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return Err(format!("line {start_line}: invalid variable name {key:?}"));
        }
        i += 1; // '='
        while i < chars.len() && (chars[i] == ' ' || chars[i] == '\t') {
            i += 1;
        }
        let scoped = |name: &str| -> Option<String> {
            lookup(name).or_else(|| out.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
        };
        let value = match chars.get(i) {
            Some('\'') => {
                let start = i + 1;
                let end = find_close(&chars, start, '\'').ok_or_else(|| {
                    format!("line {start_line}: unterminated single-quoted value for {key}")
                })?;
                line += chars[start..end].iter().filter(|&&c| c == '\n').count();
                i = end + 1;
                chars[start..end].iter().collect::<String>()
            }
            Some('"') => {
                let start = i + 1;
                let end = find_close(&chars, start, '"').ok_or_else(|| {
                    format!("line {start_line}: unterminated double-quoted value for {key}")
                })?;
                line += chars[start..end].iter().filter(|&&c| c == '\n').count();
                i = end + 1;
                let raw = unescape(&chars[start..end]);
                let mut env = Env {
                    lookup: &scoped,
                    unset: Vec::new(),
                };
                interpolate(&raw, &mut env).map_err(|e| format!("line {start_line}: {e}"))?
            }
            _ => {
                let start = i;
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                let mut raw: String = chars[start..i].iter().collect();
                if let Some(hash) = raw.find(" #").or_else(|| raw.find("\t#")) {
                    raw.truncate(hash);
                }
                let raw = raw.trim().to_string();
                let mut env = Env {
                    lookup: &scoped,
                    unset: Vec::new(),
                };
                interpolate(&raw, &mut env).map_err(|e| format!("line {start_line}: {e}"))?
            }
        };
        // Anything after a closing quote must be blanks or a comment.
        while i < chars.len() && chars[i] != '\n' {
            if chars[i] == '#' {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                break;
            }
            if !chars[i].is_whitespace() {
                return Err(format!(
                    "line {line}: unexpected text after the quoted value of {key}"
                ));
            }
            i += 1;
        }
        out.retain(|(k, _)| k != &key);
        out.push((key, value));
    }
    Ok(out)
}

/// Index of the closing quote, skipping backslash-escaped ones inside double quotes.
fn find_close(chars: &[char], mut i: usize, quote: char) -> Option<usize> {
    while i < chars.len() {
        if quote == '"' && chars[i] == '\\' {
            i += 2;
            continue;
        }
        if chars[i] == quote {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Backslash escapes of double-quoted values; `\$` stays a literal dollar (as `$$`).
fn unescape(chars: &[char]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' && i + 1 < chars.len() {
            match chars[i + 1] {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                '$' => out.push_str("$$"),
                c => out.push(c),
            }
            i += 2;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Vec<(String, String)> {
        let lookup = |k: &str| (k == "HOME").then(|| "/root".to_string());
        parse(text, &lookup).unwrap()
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn quoting_rules() {
        let text = "# comment\n\nA=plain value  # trailing\nexport B = 'single $HOME #x'\nC=\"dq \\\"q\\\" \\n ${HOME}\"\nD=\nE=a#b\n";
        assert_eq!(
            p(text),
            kv(&[
                ("A", "plain value"),
                ("B", "single $HOME #x"),
                ("C", "dq \"q\" \n /root"),
                ("D", ""),
                ("E", "a#b"),
            ])
        );
    }

    #[test]
    fn multiline_and_earlier_variables() {
        let text = "X=one\nY=\"${X}\ntwo\"\nZ='a\nb'\nW=${X}-${HOME}\nX=again\n";
        assert_eq!(
            p(text),
            kv(&[
                ("Y", "one\ntwo"),
                ("Z", "a\nb"),
                ("W", "one-/root"),
                ("X", "again")
            ])
        );
    }

    #[test]
    fn errors_name_the_line() {
        let lookup = |_: &str| None;
        assert!(parse("A=1\nnot a pair\n", &lookup)
            .unwrap_err()
            .starts_with("line 2"));
        assert!(parse("A=\"open\n", &lookup).unwrap_err().contains("unterminated"));
        assert!(parse("A='x' y\n", &lookup)
            .unwrap_err()
            .contains("after the quoted"));
    }
}
