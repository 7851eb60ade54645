//! `.dockerignore`: patterns with Go `filepath.Match` syntax (`*`, `?`, `[a-z]`, `[^a]`,
//! `\` escapes) plus `**` for any number of directories and `!` exceptions; the last matching
//! pattern wins, and a pattern matching a directory also excludes what is under it. Pure.

#[derive(Debug, Clone)]
struct Pattern {
    /// Cleaned, relative, `/`-separated.
    glob: String,
    exception: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Matcher {
    patterns: Vec<Pattern>,
}

impl Matcher {
    pub fn parse(text: &str) -> Matcher {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, body) = match line.strip_prefix('!') {
                Some(b) => (true, b.trim()),
                None => (false, line),
            };
            let glob = clean(body);
            if glob.is_empty() {
                continue;
            }
            patterns.push(Pattern { glob, exception });
        }
        Matcher { patterns }
    }

    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }

    /// Whether the relative path `path` (`a/b/c`) is excluded from the context.
    pub fn excluded(&self, path: &str) -> bool {
        let path = clean(path);
        let mut excluded = false;
        for p in &self.patterns {
            // A pattern matches the path itself or any directory above it.
            let hit = glob_match(&p.glob, &path)
                || path
                    .match_indices('/')
                    .any(|(i, _)| glob_match(&p.glob, &path[..i]));
            if hit {
                excluded = !p.exception;
            }
        }
        excluded
    }
}

/// Like Go's `filepath.Clean` on a relative path, with leading `/` and `./` removed.
pub fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

/// Match `name` against `pattern`; `*` and `?` never match `/`, `**` matches anything
/// (including nothing, and `**/` zero or more directories).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let mut budget = 100_000u32;
    match_at(&p, &n, &mut budget)
}

fn match_at(p: &[char], n: &[char], budget: &mut u32) -> bool {
    // Bound pathological backtracking (patterns with many stars).
    if *budget == 0 {
        return false;
    }
    *budget -= 1;
    let Some(&c) = p.first() else {
        return n.is_empty();
    };
    match c {
        '*' if p.get(1) == Some(&'*') => {
            let mut rest = &p[2..];
            // `**/` may also match zero directories.
            if rest.first() == Some(&'/') {
                if match_at(&rest[1..], n, budget) {
                    return true;
                }
                rest = &rest[1..];
                return (0..n.len())
                    .filter(|&i| n[i] == '/')
                    .any(|i| match_at(rest, &n[i + 1..], budget));
            }
            (0..=n.len()).any(|i| match_at(rest, &n[i..], budget))
        }
        '*' => {
            let rest = &p[1..];
            let limit = n.iter().position(|&x| x == '/').unwrap_or(n.len());
            (0..=limit).any(|i| match_at(rest, &n[i..], budget))
        }
        '?' => matches!(n.first(), Some(&x) if x != '/') && match_at(&p[1..], &n[1..], budget),
        '[' => {
            let Some(&x) = n.first() else { return false };
            if x == '/' {
                return false;
            }
            match class(&p[1..], x) {
                Some((ok, used)) => ok && match_at(&p[1 + used..], &n[1..], budget),
                None => false,
            }
        }
        '\\' if p.len() > 1 => n.first() == Some(&p[1]) && match_at(&p[2..], &n[1..], budget),
        _ => n.first() == Some(&c) && match_at(&p[1..], &n[1..], budget),
    }
}

/// A character class after `[`: whether `x` is in it and how many pattern chars it used
/// (including the closing `]`). None for a malformed class (which then matches nothing).
fn class(p: &[char], x: char) -> Option<(bool, usize)> {
    let mut i = 0;
    let negate = matches!(p.first(), Some('^') | Some('!'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    loop {
        let c = *p.get(i)?;
        if c == ']' && !first {
            return Some((hit != negate, i + 1));
        }
        first = false;
        let lo = if c == '\\' {
            i += 1;
            *p.get(i)?
        } else {
            c
        };
        i += 1;
        let hi = if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|&c| c != ']') {
            i += 1;
            let h = if p[i] == '\\' {
                i += 1;
                *p.get(i)?
            } else {
                p[i]
            };
            i += 1;
            h
        } else {
            lo
        };
        if lo <= x && x <= hi {
            hit = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn go_filepath_match_semantics() {
        assert!(glob_match("*.txt", "a.txt"));
        assert!(!glob_match("*.txt", "d/a.txt"));
        assert!(glob_match("d/*.txt", "d/a.txt"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "a/c"));
        assert!(glob_match("[a-c]x", "bx"));
        assert!(!glob_match("[^a-c]x", "bx"));
        assert!(glob_match("[!a-c]x", "dx"));
        assert!(glob_match("\\*", "*"));
        assert!(!glob_match("\\*", "a"));
        assert!(!glob_match("[a", "a"));
    }

    #[test]
    fn double_star() {
        assert!(glob_match("**/*.go", "a.go"));
        assert!(glob_match("**/*.go", "x/y/a.go"));
        assert!(glob_match("a/**/b", "a/b"));
        assert!(glob_match("a/**/b", "a/x/y/b"));
        assert!(glob_match("**", "anything/at/all"));
        assert!(!glob_match("a/**/b", "ab"));
    }

    #[test]
    fn last_match_wins_and_parents_exclude() {
        let m = Matcher::parse("# comment\n\n*.md\n!README.md\nbuild\n/secret/\n./tmp/*\n");
        assert!(m.excluded("notes.md"));
        assert!(!m.excluded("README.md"));
        assert!(m.excluded("build"));
        assert!(m.excluded("build/out/x.o"));
        assert!(m.excluded("secret/key"));
        assert!(m.excluded("tmp/a"));
        assert!(!m.excluded("tmp"));
        assert!(!m.excluded("src/main.rs"));
        assert!(!m.excluded("docs/notes.md"));
        assert!(m.has_exceptions());
    }

    #[test]
    fn exception_inside_excluded_directory() {
        let m = Matcher::parse("logs\n!logs/keep.log\n");
        assert!(m.excluded("logs/a.log"));
        assert!(!m.excluded("logs/keep.log"));
    }

    proptest! {
        #[test]
        fn never_panics(p in "[a*?\\[\\]\\\\/!^-]{0,20}", n in "[a/b-]{0,20}") {
            let _ = glob_match(&p, &n);
            let _ = Matcher::parse(&p).excluded(&n);
        }
    }
}
