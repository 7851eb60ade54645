//! Compose files → an interpolated, merged, normalised and validated [`model::Project`].
//!
//! Pure: no file system, no clock, no network. The CLI reads the files and the environment
//! and hands them in ([`load::Input`]); the engine-facing plan ([`plan`]) turns the model into
//! Docker Engine API request bodies and decides what `up` must change.
//!
//! Stages, one module each: [`yaml`] (parse with limits, positions) → [`interpolate`] (and
//! [`dotenv`]) → `extends` and [`merge`] (several `-f` files) → [`normalize`] (typed
//! [`model`]) → [`validate`] (references, cycles). [`emit`] prints the model back as YAML.

pub mod dotenv;
pub mod emit;
pub mod error;
pub mod interpolate;
pub mod load;
pub mod merge;
pub mod model;
pub mod name;
pub mod normalize;
pub mod plan;
pub mod validate;
pub mod yaml;

pub use error::ComposeError;
