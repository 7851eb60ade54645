//! Errors that say where: the file, line and column of the offending node and its key path.

use std::fmt;

/// Where a node was written: an index into the loaded files, 1-based line and column.
/// `line == 0` means the value was not written in any file (a default or a merge result).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub file: u32,
    pub line: u32,
    pub col: u32,
}

impl Pos {
    pub const NONE: Pos = Pos {
        file: 0,
        line: 0,
        col: 0,
    };
}

/// A compose file problem, rendered `file:line:col: key.path: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeError {
    pub file: String,
    pub line: u32,
    pub col: u32,
    pub key: String,
    pub message: String,
}

impl ComposeError {
    /// An error with no position (command-line input, missing files).
    pub fn plain(message: impl Into<String>) -> ComposeError {
        ComposeError {
            file: String::new(),
            line: 0,
            col: 0,
            key: String::new(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ComposeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.file.is_empty() {
            write!(f, "{}", self.file)?;
            if self.line > 0 {
                write!(f, ":{}:{}", self.line, self.col)?;
            }
            write!(f, ": ")?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ComposeError {}

/// Turns positions into file names; built once per load from the list of files read.
#[derive(Debug, Clone, Default)]
pub struct Files {
    pub names: Vec<String>,
}

impl Files {
    pub fn error(&self, pos: Pos, key: &str, message: impl Into<String>) -> ComposeError {
        ComposeError {
            file: self.names.get(pos.file as usize).cloned().unwrap_or_default(),
            line: pos.line,
            col: pos.col,
            key: key.to_string(),
            message: message.into(),
        }
    }
}
