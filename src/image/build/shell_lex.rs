//! Variable substitution and quote removal in Dockerfile arguments, as BuildKit's shell lexer
//! does it: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:+alt}`,
//! `${VAR+alt}`, `${VAR:?message}`; single quotes are literal, double quotes allow
//! substitution; the escape character (`\` or `` ` ``) protects the next character. Pure.

/// Where variable values come from.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Expand one word (no splitting on whitespace): WORKDIR, USER, STOPSIGNAL...
pub fn word(s: &str, escape: char, env: Lookup<'_>) -> Result<String, String> {
    let mut lx = Lexer::new(s, escape, env);
    let words = lx.run(None, false)?;
    Ok(words.into_iter().next().unwrap_or_default())
}

/// Expand and split into words on unquoted whitespace: ENV, LABEL, COPY, EXPOSE...
pub fn words(s: &str, escape: char, env: Lookup<'_>) -> Result<Vec<String>, String> {
    let mut lx = Lexer::new(s, escape, env);
    lx.run(None, true)
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    env: Lookup<'a>,
}

impl<'a> Lexer<'a> {
    fn new(s: &str, escape: char, env: Lookup<'a>) -> Lexer<'a> {
        Lexer {
            chars: s.chars().collect(),
            pos: 0,
            escape,
            env,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    /// Process until the end or an unquoted `stop` (consumed). `split` makes whitespace
    /// separate words; otherwise it is kept.
    fn run(&mut self, stop: Option<char>, split: bool) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut started = false;
        loop {
            let Some(c) = self.peek() else {
                if stop.is_some() {
                    return Err("missing '}' in variable substitution".into());
                }
                break;
            };
            if Some(c) == stop {
                self.pos += 1;
                break;
            }
            if split && c.is_whitespace() {
                self.pos += 1;
                if started {
                    out.push(std::mem::take(&mut cur));
                    started = false;
                }
                continue;
            }
            started = true;
            self.pos += 1;
            if c == self.escape {
                match self.peek() {
                    Some(n) => {
                        cur.push(n);
                        self.pos += 1;
                    }
                    None => cur.push(c),
                }
            } else if c == '\'' {
                loop {
                    match self.peek() {
                        None => {
                            return Err(
                                "unexpected end of statement while looking for matching single-quote".into(),
                            )
                        }
                        Some('\'') => {
                            self.pos += 1;
                            break;
                        }
                        Some(x) => {
                            cur.push(x);
                            self.pos += 1;
                        }
                    }
                }
            } else if c == '"' {
                loop {
                    match self.peek() {
                        None => {
                            return Err(
                                "unexpected end of statement while looking for matching double-quote".into(),
                            )
                        }
                        Some('"') => {
                            self.pos += 1;
                            break;
                        }
                        Some('$') => {
                            self.pos += 1;
                            cur.push_str(&self.dollar()?);
                        }
                        Some(x) if x == self.escape => {
                            self.pos += 1;
                            match self.peek() {
                                Some(n @ ('"' | '$')) => {
                                    cur.push(n);
                                    self.pos += 1;
                                }
                                Some(n) if n == self.escape => {
                                    cur.push(n);
                                    self.pos += 1;
                                }
                                _ => cur.push(x),
                            }
                        }
                        Some(x) => {
                            cur.push(x);
                            self.pos += 1;
                        }
                    }
                }
            } else if c == '$' {
                cur.push_str(&self.dollar()?);
            } else {
                cur.push(c);
            }
        }
        if started || !split {
            out.push(cur);
        }
        Ok(out)
    }

    /// After a `$`: the substituted value (or a literal `$`).
    fn dollar(&mut self) -> Result<String, String> {
        match self.peek() {
            Some('{') => {
                self.pos += 1;
                self.braced()
            }
            Some(c) if is_name_start(c) => {
                let name = self.name();
                Ok((self.env)(&name).unwrap_or_default())
            }
            _ => Ok("$".to_string()),
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                name.push(c);
                self.pos += 1;
            } else {
                break;
            }
        }
        name
    }

    fn braced(&mut self) -> Result<String, String> {
        let name = self.name();
        if name.is_empty() {
            return Err(format!(
                "bad substitution: missing variable name at position {}",
                self.pos
            ));
        }
        let value = (self.env)(&name);
        let colon = self.peek() == Some(':');
        if colon {
            self.pos += 1;
        }
        let op = self.peek();
        match op {
            Some('}') if !colon => {
                self.pos += 1;
                Ok(value.unwrap_or_default())
            }
            Some(op @ ('-' | '+' | '?')) => {
                self.pos += 1;
                let word = self.run(Some('}'), false)?.concat();
                // With a colon an empty value counts as unset.
                let set = match &value {
                    Some(v) => !(colon && v.is_empty()),
                    None => false,
                };
                match op {
                    '-' => Ok(if set { value.unwrap_or_default() } else { word }),
                    '+' => Ok(if set { word } else { String::new() }),
                    _ if set => Ok(value.unwrap_or_default()),
                    _ => Err(if word.is_empty() {
                        format!("{name}: is not allowed to be unset")
                    } else {
                        format!("{name}: {word}")
                    }),
                }
            }
            Some(c) => Err(format!("unsupported modifier ({c}) in substitution")),
            None => Err("missing '}' in variable substitution".into()),
        }
    }
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "A" => Some("apple".into()),
            "E" => Some(String::new()),
            "SP" => Some("a b".into()),
            _ => None,
        }
    }

    fn w(s: &str) -> String {
        word(s, '\\', &env).unwrap()
    }

    #[test]
    fn plain_and_braced() {
        assert_eq!(w("$A"), "apple");
        assert_eq!(w("${A}s"), "apples");
        assert_eq!(w("x$Ay"), "x");
        assert_eq!(w("$NOPE"), "");
        assert_eq!(w("a$"), "a$");
        assert_eq!(w("$1"), "$1");
    }

    #[test]
    fn modifiers_like_buildkit() {
        assert_eq!(w("${A:-d}"), "apple");
        assert_eq!(w("${NOPE:-d}"), "d");
        assert_eq!(w("${E:-d}"), "d");
        assert_eq!(w("${E-d}"), "");
        assert_eq!(w("${NOPE-d}"), "d");
        assert_eq!(w("${A:+r}"), "r");
        assert_eq!(w("${E:+r}"), "");
        assert_eq!(w("${E+r}"), "r");
        assert_eq!(w("${NOPE:+r}"), "");
        assert_eq!(w("${NOPE:-${A}}"), "apple");
        assert_eq!(w("${NOPE:-a b}"), "a b");
        assert_eq!(
            word("${NOPE:?must be set}", '\\', &env).unwrap_err(),
            "NOPE: must be set"
        );
        assert!(word("${A", '\\', &env).is_err());
        assert!(word("${A%x}", '\\', &env).is_err());
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(w("'$A'"), "$A");
        assert_eq!(w("\"$A b\""), "apple b");
        assert_eq!(w("\\$A"), "$A");
        assert_eq!(w("\"\\$A\""), "$A");
        assert_eq!(w("\"a\\b\""), "a\\b");
        assert_eq!(word("`$A", '`', &env).unwrap(), "$A");
        assert!(word("'open", '\\', &env).is_err());
    }

    #[test]
    fn splitting() {
        let ws = words("a=\"1 2\" b=$SP  'c d'  \"\"", '\\', &env).unwrap();
        assert_eq!(ws, ["a=1 2", "b=a b", "c d", ""]);
        assert_eq!(words("  ", '\\', &env).unwrap(), Vec::<String>::new());
    }

    proptest! {
        #[test]
        fn never_panics(s in "[ab$'\"{}:+?\\-\\\\` ]{0,40}") {
            let _ = words(&s, '\\', &env);
            let _ = word(&s, '`', &env);
        }
    }
}
