//! The Dockerfile parser: parser directives (`# escape=`), line continuations, comments,
//! heredocs, instruction flags, exec (JSON) versus shell form. Pure: text in, instructions out.
//! Variable substitution happens later (see `shell_lex`), when the build knows the values.

use std::fmt;

/// An error that names the Dockerfile line it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub message: String,
}

impl LineError {
    pub fn new(line: usize, message: impl Into<String>) -> LineError {
        LineError {
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "Dockerfile: {}", self.message)
        } else {
            write!(f, "Dockerfile:{}: {}", self.line, self.message)
        }
    }
}

/// Instructions the builder knows; anything else is an error at parse time.
pub const KNOWN: &[&str] = &[
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "MAINTAINER",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
];

/// A heredoc body attached to an instruction (`RUN <<EOF`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    pub content: String,
    /// False when the delimiter was quoted (`<<"EOF"`): no variable expansion in the body.
    pub expand: bool,
}

/// One instruction, after continuation lines were joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// 1-based line where the instruction starts.
    pub line: usize,
    /// Upper-case keyword.
    pub keyword: String,
    /// Leading `--name=value` flags (`--from=build`), value empty for a bare `--name`.
    pub flags: Vec<(String, String)>,
    /// The text after the keyword and flags, trimmed.
    pub rest: String,
    /// `Some` when `rest` is a JSON array of strings (exec form).
    pub json: Option<Vec<String>>,
    pub heredocs: Vec<Heredoc>,
    /// The instruction as written (continuations joined), for history and cache keys.
    pub original: String,
}

impl Instruction {
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    pub escape: char,
    pub instructions: Vec<Instruction>,
}

/// Instructions that take `--flags` before their arguments.
fn takes_flags(keyword: &str) -> bool {
    matches!(keyword, "FROM" | "RUN" | "COPY" | "ADD" | "HEALTHCHECK")
}

/// Parse a whole Dockerfile.
pub fn parse(text: &str) -> Result<Dockerfile, LineError> {
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let (escape, first) = directives(&lines)?;
    let mut instructions = Vec::new();
    let mut i = first;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            i += 1;
            continue;
        }
        let start = i;
        let mut logical = String::new();
        // Join continuation lines; comment and empty lines inside a continuation are dropped.
        loop {
            let l = lines[i];
            i += 1;
            match continued(l, escape) {
                Some(head) => {
                    logical.push_str(head);
                    while i < lines.len() && {
                        let t = lines[i].trim_start();
                        t.starts_with('#') || t.is_empty()
                    } {
                        i += 1;
                    }
                    if i >= lines.len() {
                        break;
                    }
                }
                None => {
                    logical.push_str(l);
                    break;
                }
            }
        }
        let mut ins = instruction(start + 1, &logical)?;
        if matches!(ins.keyword.as_str(), "RUN" | "COPY" | "ADD") {
            for (name, strip, expand) in heredoc_markers(&ins.rest) {
                let mut content = String::new();
                loop {
                    let Some(l) = lines.get(i) else {
                        return Err(LineError::new(
                            start + 1,
                            format!("unterminated heredoc {name:?}"),
                        ));
                    };
                    i += 1;
                    let l = if strip { l.trim_start_matches('\t') } else { l };
                    if l == name {
                        break;
                    }
                    content.push_str(l);
                    content.push('\n');
                }
                ins.heredocs.push(Heredoc {
                    name,
                    content,
                    expand,
                });
            }
        }
        instructions.push(ins);
    }
    Ok(Dockerfile { escape, instructions })
}

/// Parser directives: `# key=value` lines at the very top. Returns the escape character and
/// the index of the first line after them.
fn directives(lines: &[&str]) -> Result<(char, usize), LineError> {
    let mut escape = '\\';
    let mut seen = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let Some(body) = line.trim().strip_prefix('#') else {
            return Ok((escape, n));
        };
        let Some((key, value)) = body.split_once('=') else {
            return Ok((escape, n));
        };
        let key = key.trim().to_ascii_lowercase();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Ok((escape, n));
        }
        if seen.contains(&key) {
            return Err(LineError::new(
                n + 1,
                format!("only one {key} parser directive can be used"),
            ));
        }
        if key == "escape" {
            escape = match value.trim() {
                "\\" => '\\',
                "`" => '`',
                other => {
                    return Err(LineError::new(
                        n + 1,
                        format!("invalid escape token '{other}' does not match ` or \\"),
                    ))
                }
            };
        }
        seen.push(key);
    }
    Ok((escape, lines.len()))
}

/// The line without its trailing escape character when it continues on the next line.
fn continued(line: &str, escape: char) -> Option<&str> {
    let t = line.trim_end();
    t.strip_suffix(escape)
}

fn instruction(line: usize, logical: &str) -> Result<Instruction, LineError> {
    let text = logical.trim();
    let (word, mut rest) = match text.find(char::is_whitespace) {
        Some(p) => (&text[..p], text[p..].trim_start()),
        None => (text, ""),
    };
    let keyword = word.to_ascii_uppercase();
    if !KNOWN.contains(&keyword.as_str()) {
        return Err(LineError::new(line, format!("unknown instruction: {word}")));
    }
    let mut flags = Vec::new();
    if takes_flags(&keyword) {
        while let Some(f) = rest.strip_prefix("--") {
            let end = f.find(char::is_whitespace).unwrap_or(f.len());
            let flag = &f[..end];
            let (k, v) = flag.split_once('=').unwrap_or((flag, ""));
            if k.is_empty() {
                break;
            }
            flags.push((k.to_ascii_lowercase(), v.to_string()));
            rest = f[end..].trim_start();
        }
    }
    let rest = rest.to_string();
    let json = if rest.starts_with('[') {
        exec_form(&rest)
    } else {
        None
    };
    Ok(Instruction {
        line,
        keyword,
        flags,
        rest,
        json,
        heredocs: Vec::new(),
        original: text.to_string(),
    })
}

/// A JSON array of strings, or None (then the text is shell form, as BuildKit does).
pub fn exec_form(s: &str) -> Option<Vec<String>> {
    serde_json::from_str::<Vec<String>>(s).ok()
}

/// Heredoc markers in an instruction's arguments: `<<EOF`, `<<-EOF`, `<<"EOF"`, `<<'EOF'`.
/// Returns (name, strip leading tabs, expand variables).
fn heredoc_markers(rest: &str) -> Vec<(String, bool, bool)> {
    let mut out = Vec::new();
    let mut s = rest;
    while let Some(p) = s.find("<<") {
        let mut after = &s[p + 2..];
        let strip = after.starts_with('-');
        if strip {
            after = &after[1..];
        }
        let (quoted, body) = match after.chars().next() {
            Some(q @ ('"' | '\'')) => (Some(q), &after[1..]),
            _ => (None, after),
        };
        let end = body
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'))
            .unwrap_or(body.len());
        let name = &body[..end];
        let mut next = &body[end..];
        if let Some(q) = quoted {
            match next.strip_prefix(q) {
                Some(n) => next = n,
                None => {
                    s = next;
                    continue;
                }
            }
        }
        if !name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()) {
            out.push((name.to_string(), strip, quoted.is_none()));
        }
        s = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kw(df: &Dockerfile) -> Vec<&str> {
        df.instructions.iter().map(|i| i.keyword.as_str()).collect()
    }

    #[test]
    fn continuations_comments_and_lines() {
        let df = parse(
            "# a comment\nFROM busybox AS base\n\nRUN echo a \\\n  # inside\n  && echo b\nCMD [\"sh\", \"-c\", \"x\"]\nenv A=1\n",
        )
        .unwrap();
        assert_eq!(kw(&df), ["FROM", "RUN", "CMD", "ENV"]);
        assert_eq!(df.instructions[1].line, 4);
        assert_eq!(df.instructions[1].rest, "echo a   && echo b");
        assert_eq!(df.instructions[2].line, 7);
        assert_eq!(
            df.instructions[2].json,
            Some(vec!["sh".into(), "-c".into(), "x".into()])
        );
        assert_eq!(df.instructions[3].line, 8);
    }

    #[test]
    fn escape_directive_switches_to_backtick() {
        let df = parse("# escape=`\nFROM x\nRUN dir c:\\ `\n  && echo hi\n").unwrap();
        assert_eq!(df.escape, '`');
        assert_eq!(df.instructions[1].rest, "dir c:\\   && echo hi");
        let err = parse("# escape=x\nFROM x").unwrap_err();
        assert_eq!(err.line, 1);
    }

    #[test]
    fn directives_only_at_top() {
        let df = parse("FROM x\n# escape=`\nRUN a \\\n b\n").unwrap();
        assert_eq!(df.escape, '\\');
        assert_eq!(df.instructions[1].rest, "a  b");
    }

    #[test]
    fn unknown_instruction_names_the_line() {
        let err = parse("FROM x\n\n# c\nRUN true\nFOO bar\n").unwrap_err();
        assert_eq!(err.to_string(), "Dockerfile:5: unknown instruction: FOO");
    }

    #[test]
    fn flags_and_exec_form() {
        let df =
            parse("COPY --from=build --chown=1:2 /a /b\nRUN [\"echo\", \"hi\"]\nRUN [not json\n").unwrap();
        let c = &df.instructions[0];
        assert_eq!(c.flag("from"), Some("build"));
        assert_eq!(c.flag("chown"), Some("1:2"));
        assert_eq!(c.rest, "/a /b");
        assert_eq!(df.instructions[1].json, Some(vec!["echo".into(), "hi".into()]));
        assert_eq!(df.instructions[2].json, None);
    }

    #[test]
    fn heredocs() {
        let df = parse(
            "FROM x\nRUN <<EOF\necho one\necho two\nEOF\nCOPY <<-\"END\" /f\n\thello $X\n\tEND\nCMD x\n",
        )
        .unwrap();
        assert_eq!(kw(&df), ["FROM", "RUN", "COPY", "CMD"]);
        let r = &df.instructions[1];
        assert_eq!(r.heredocs[0].content, "echo one\necho two\n");
        assert!(r.heredocs[0].expand);
        let c = &df.instructions[2];
        assert_eq!(c.heredocs[0].name, "END");
        assert_eq!(c.heredocs[0].content, "hello $X\n");
        assert!(!c.heredocs[0].expand);
        assert_eq!(df.instructions[3].line, 9);
        assert!(parse("RUN <<EOF\nno end\n").is_err());
    }

    #[test]
    fn trailing_continuation_at_end_of_file() {
        let df = parse("FROM x\nRUN a \\").unwrap();
        assert_eq!(df.instructions[1].rest, "a");
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,200}") {
            let _ = parse(&s);
        }

        #[test]
        fn never_panics_on_dockerfile_like_text(
            lines in proptest::collection::vec(
                "(FROM|RUN|COPY|ENV|# escape=`|#|\\\\| |\\[|\"|<<-?'?E|E|--from=x|\t|\\$\\{A:-b\\}|x){0,8}",
                0..12,
            )
        ) {
            let _ = parse(&lines.join("\n"));
        }
    }
}
