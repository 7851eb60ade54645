//! Project names as compose v2 chooses them: `-p`, then COMPOSE_PROJECT_NAME, then the
//! top-level `name:`, then the project directory's base name (normalised).

/// Lower-case letters, digits, `-` and `_`, starting with a letter or digit.
pub fn is_valid(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// A directory name made into a project name: lower-cased, other characters dropped, and
/// leading `-`/`_` removed.
pub fn normalize(name: &str) -> String {
    let lowered: String = name
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_')
        .collect();
    lowered.trim_start_matches(['-', '_']).to_string()
}

/// Picks the project name; explicit names must already be valid.
pub fn choose(
    flag: Option<&str>,
    env: Option<&str>,
    file_name: Option<&str>,
    dir_base: &str,
) -> Result<String, String> {
    for (source, value) in [("-p", flag), ("COMPOSE_PROJECT_NAME", env), ("name", file_name)] {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            if !is_valid(v) {
                return Err(format!(
                    "invalid project name {v:?} (from {source}): it must contain only lowercase letters, decimal digits, dashes and underscores, and begin with a lowercase letter or decimal digit"
                ));
            }
            return Ok(v.to_string());
        }
    }
    let n = normalize(dir_base);
    if n.is_empty() {
        return Err(format!(
            "project name {dir_base:?} from the directory is empty once normalised; use -p"
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_and_rules() {
        assert_eq!(choose(Some("a"), Some("b"), Some("c"), "d").unwrap(), "a");
        assert_eq!(choose(None, Some("b"), Some("c"), "d").unwrap(), "b");
        assert_eq!(choose(None, None, Some("c"), "d").unwrap(), "c");
        assert_eq!(choose(None, None, None, "My.App_Dir").unwrap(), "myapp_dir");
        assert_eq!(choose(None, None, None, "_-x").unwrap(), "x");
        assert!(choose(Some("Bad Name"), None, None, "d").is_err());
        assert!(choose(None, None, None, "...").is_err());
        assert!(is_valid("web-1_a") && !is_valid("-a") && !is_valid("A"));
    }
}
