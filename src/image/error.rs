//! The image store's error type: Docker-like messages and the HTTP status the API answers with.

use std::fmt;
use std::io;

#[derive(Debug)]
pub enum ImageError {
    /// No image by that name or ID (holds the name as the user would recognise it).
    NotFound(String),
    /// An ID prefix matching several images.
    Ambiguous(String),
    /// The operation conflicts with the store's state (e.g. rmi of a multi-tagged ID).
    Conflict(String),
    /// A reference that does not follow the grammar.
    InvalidReference(String),
    /// Bad input: malformed archive, digest mismatch, path escape, bad --change.
    Invalid(String),
    Io(io::Error),
}

impl ImageError {
    /// The status code the Docker API uses for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            ImageError::NotFound(_) => 404,
            ImageError::Conflict(_) => 409,
            ImageError::Ambiguous(_) | ImageError::InvalidReference(_) | ImageError::Invalid(_) => 400,
            ImageError::Io(_) => 500,
        }
    }
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageError::NotFound(name) => write!(f, "No such image: {name}"),
            ImageError::Ambiguous(prefix) => {
                write!(
                    f,
                    "multiple images match the ID prefix {prefix:?}: give more characters"
                )
            }
            ImageError::Conflict(msg) | ImageError::InvalidReference(msg) | ImageError::Invalid(msg) => {
                f.write_str(msg)
            }
            ImageError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ImageError {}

impl From<io::Error> for ImageError {
    fn from(e: io::Error) -> Self {
        // Unpacking reports bad archive content as InvalidData; keep that a client error.
        if e.kind() == io::ErrorKind::InvalidData {
            ImageError::Invalid(e.to_string())
        } else {
            ImageError::Io(e)
        }
    }
}

impl From<super::reference::ReferenceError> for ImageError {
    fn from(e: super::reference::ReferenceError) -> Self {
        ImageError::InvalidReference(e.to_string())
    }
}
