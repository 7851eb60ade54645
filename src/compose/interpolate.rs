//! Variable interpolation as the compose spec defines it: `$VAR`, `${VAR}`, `${VAR:-d}`,
//! `${VAR-d}`, `${VAR:?err}`, `${VAR?err}`, `${VAR:+r}`, `${VAR+r}`, nested defaults and `$$`.
//!
//! Reference: compose-spec, "Interpolation". `:`-forms treat an empty value like an unset one;
//! an unset variable with no default becomes "" and is reported as a warning.

use super::error::{ComposeError, Files};
use super::yaml::{Node, Value};

/// Why a string could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterpolationError {
    /// `${VAR:?msg}` / `${VAR?msg}` with VAR missing.
    Required { name: String, message: String },
    /// A `$` not followed by a name, `{`, or `$`, or an unterminated `${`.
    Invalid(String),
}

impl std::fmt::Display for InterpolationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InterpolationError::Required { name, message } if message.is_empty() => {
                write!(f, "required variable {name} is missing a value")
            }
            InterpolationError::Required { name, message } => {
                write!(f, "required variable {name} is missing a value: {message}")
            }
            InterpolationError::Invalid(s) => write!(f, "invalid interpolation format for {s:?}"),
        }
    }
}

/// Resolves variables and collects the names of unset ones (for warnings).
pub struct Env<'a> {
    pub lookup: &'a dyn Fn(&str) -> Option<String>,
    pub unset: Vec<String>,
}

impl Env<'_> {
    fn get(&mut self, name: &str) -> Option<String> {
        (self.lookup)(name)
    }
}

fn is_name_start(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_name_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

/// Interpolates one string.
pub fn interpolate(text: &str, env: &mut Env) -> Result<String, InterpolationError> {
    let chars: Vec<char> = text.chars().collect();
    let (out, end) = expand(&chars, 0, false, env, text)?;
    debug_assert_eq!(end, chars.len());
    Ok(out)
}

/// Expands from `i` to the end, or, inside a braced word, to its closing `}` (returned index
/// points at it).
fn expand(
    s: &[char],
    mut i: usize,
    in_braces: bool,
    env: &mut Env,
    whole: &str,
) -> Result<(String, usize), InterpolationError> {
    let mut out = String::new();
    while i < s.len() {
        let c = s[i];
        if in_braces && c == '}' {
            return Ok((out, i));
        }
        if c != '$' {
            out.push(c);
            i += 1;
            continue;
        }
        match s.get(i + 1) {
            Some('$') => {
                out.push('$');
                i += 2;
            }
            Some('{') => {
                let (value, next) = braced(s, i + 2, env, whole)?;
                out.push_str(&value);
                i = next;
            }
            Some(&c) if is_name_start(c) => {
                let start = i + 1;
                let mut j = start;
                while j < s.len() && is_name_char(s[j]) {
                    j += 1;
                }
                let name: String = s[start..j].iter().collect();
                out.push_str(&lookup_or_blank(&name, env));
                i = j;
            }
            _ => return Err(InterpolationError::Invalid(whole.to_string())),
        }
    }
    if in_braces {
        return Err(InterpolationError::Invalid(whole.to_string()));
    }
    Ok((out, i))
}

fn lookup_or_blank(name: &str, env: &mut Env) -> String {
    match env.get(name) {
        Some(v) => v,
        None => {
            if !env.unset.iter().any(|n| n == name) {
                env.unset.push(name.to_string());
            }
            String::new()
        }
    }
}

/// Skips a braced word without resolving anything (the branch that is not taken must not
/// raise `:?` errors or warnings); returns the index of its closing `}`.
fn skip_word(s: &[char], mut i: usize, whole: &str) -> Result<usize, InterpolationError> {
    let mut depth = 0usize;
    while i < s.len() {
        match s[i] {
            '$' if s.get(i + 1) == Some(&'$') => i += 2,
            '$' if s.get(i + 1) == Some(&'{') => {
                depth += 1;
                i += 2;
            }
            '}' if depth == 0 => return Ok(i),
            '}' => {
                depth -= 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    Err(InterpolationError::Invalid(whole.to_string()))
}

/// `${...}` starting after the `{`; returns the value and the index after the closing `}`.
fn braced(
    s: &[char],
    start: usize,
    env: &mut Env,
    whole: &str,
) -> Result<(String, usize), InterpolationError> {
    let mut j = start;
    while j < s.len() && is_name_char(s[j]) {
        j += 1;
    }
    let name: String = s[start..j].iter().collect();
    if name.is_empty() || !is_name_start(s[start]) {
        return Err(InterpolationError::Invalid(whole.to_string()));
    }
    if s.get(j) == Some(&'}') {
        return Ok((lookup_or_blank(&name, env), j + 1));
    }
    let colon = s.get(j) == Some(&':');
    let op_at = if colon { j + 1 } else { j };
    let op = match s.get(op_at) {
        Some(&c @ ('-' | '?' | '+')) => c,
        _ => return Err(InterpolationError::Invalid(whole.to_string())),
    };
    let word_start = op_at + 1;
    let value = env.get(&name);
    let missing = match &value {
        None => true,
        Some(v) => colon && v.is_empty(),
    };
    let take_word = match op {
        '-' | '?' => missing,
        _ => !missing,
    };
    if !take_word {
        let end = skip_word(s, word_start, whole)?;
        let result = match op {
            '+' => String::new(),
            _ => value.unwrap_or_default(),
        };
        return Ok((result, end + 1));
    }
    let (word, end) = expand(s, word_start, true, env, whole)?;
    match op {
        '?' => Err(InterpolationError::Required { name, message: word }),
        _ => Ok((word, end + 1)),
    }
}

/// Interpolates every string value in a tree (keys are left as written, as compose does).
pub fn interpolate_tree(
    node: &mut Node,
    path: &mut Vec<String>,
    env: &mut Env,
    files: &Files,
) -> Result<(), ComposeError> {
    match &mut node.value {
        Value::Str(s) if s.contains('$') => {
            *s = interpolate(s, env).map_err(|e| files.error(node.pos, &path.join("."), e.to_string()))?;
        }
        Value::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(format!("[{i}]"));
                let r = interpolate_tree(item, path, env, files);
                path.pop();
                r?;
            }
        }
        Value::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                path.push(k.name.clone());
                let r = interpolate_tree(v, path, env, files);
                path.pop();
                r?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> Result<String, InterpolationError> {
        let lookup = |k: &str| match k {
            "SET" => Some("value".to_string()),
            "EMPTY" => Some(String::new()),
            "OTHER" => Some("other".to_string()),
            _ => None,
        };
        let mut env = Env {
            lookup: &lookup,
            unset: Vec::new(),
        };
        interpolate(text, &mut env)
    }

    #[test]
    fn simple_forms() {
        assert_eq!(run("$SET").unwrap(), "value");
        assert_eq!(run("${SET}").unwrap(), "value");
        assert_eq!(run("a${SET}b$SET.c").unwrap(), "avalueb".to_string() + "value.c");
        assert_eq!(run("$UNSET").unwrap(), "");
        assert_eq!(run("$$SET and $$").unwrap(), "$SET and $");
        assert_eq!(run("no dollars").unwrap(), "no dollars");
    }

    #[test]
    fn defaults_distinguish_empty_and_unset() {
        assert_eq!(run("${UNSET:-d}").unwrap(), "d");
        assert_eq!(run("${EMPTY:-d}").unwrap(), "d");
        assert_eq!(run("${SET:-d}").unwrap(), "value");
        assert_eq!(run("${UNSET-d}").unwrap(), "d");
        assert_eq!(run("${EMPTY-d}").unwrap(), "");
        assert_eq!(run("${SET-d}").unwrap(), "value");
    }

    #[test]
    fn replacements() {
        assert_eq!(run("${SET:+r}").unwrap(), "r");
        assert_eq!(run("${EMPTY:+r}").unwrap(), "");
        assert_eq!(run("${EMPTY+r}").unwrap(), "r");
        assert_eq!(run("${UNSET+r}").unwrap(), "");
        assert_eq!(run("${UNSET:+r}").unwrap(), "");
    }

    #[test]
    fn required() {
        assert_eq!(
            run("${UNSET:?need it}").unwrap_err(),
            InterpolationError::Required {
                name: "UNSET".into(),
                message: "need it".into()
            }
        );
        assert!(run("${EMPTY:?x}").is_err());
        assert_eq!(run("${EMPTY?x}").unwrap(), "");
        assert_eq!(run("${SET:?x}").unwrap(), "value");
        assert!(run("${UNSET?x}").is_err());
        assert_eq!(
            run("${UNSET:?}").unwrap_err().to_string(),
            "required variable UNSET is missing a value"
        );
    }

    #[test]
    fn nesting_is_resolved_only_when_taken() {
        assert_eq!(run("${UNSET:-${OTHER}}").unwrap(), "other");
        assert_eq!(run("${UNSET:-${ALSO_UNSET:-deep}}").unwrap(), "deep");
        assert_eq!(run("${SET:-${UNSET:?never raised}}").unwrap(), "value");
        assert_eq!(run("${UNSET:-a $$ b}").unwrap(), "a $ b");
        assert_eq!(run("${UNSET:-x}y}").unwrap(), "xy}");
    }

    #[test]
    fn invalid_forms() {
        assert!(matches!(run("${SET"), Err(InterpolationError::Invalid(_))));
        assert!(matches!(run("${}"), Err(InterpolationError::Invalid(_))));
        assert!(matches!(run("${1A}"), Err(InterpolationError::Invalid(_))));
        assert!(matches!(run("$ x"), Err(InterpolationError::Invalid(_))));
        assert!(matches!(run("${SET*x}"), Err(InterpolationError::Invalid(_))));
    }

    #[test]
    fn unset_names_are_collected_once() {
        let lookup = |_: &str| None;
        let mut env = Env {
            lookup: &lookup,
            unset: Vec::new(),
        };
        interpolate("$A ${A} ${B:-x} $C", &mut env).unwrap();
        assert_eq!(env.unset, ["A", "C"]);
    }
}
