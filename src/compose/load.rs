//! The loading pipeline, pure: parse each file, interpolate it, resolve `extends`, merge the
//! files in order, choose the project name, normalise and validate.
//!
//! The caller reads files (the `-f` list up front, `env_file` and `extends.file` through
//! `read_file`) and provides the environment (shell over `.env`), so this module does no I/O.

use super::error::{ComposeError, Files};
use super::interpolate::{interpolate_tree, Env};
use super::merge::{merge_files, merge_service, prepare_service};
use super::model::Project;
use super::normalize::{resolve_path, Normalizer};
use super::yaml::{self, Node};

pub struct Input<'a> {
    /// `(absolute path, contents)` in `-f` order.
    pub files: Vec<(String, String)>,
    /// Relative paths resolve against it (the first file's directory by default).
    pub working_dir: String,
    /// Variables: the shell's, then the `.env` file's.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// `-p`.
    pub project_name: Option<String>,
    pub profiles: Vec<String>,
    /// Services named on the command line (they are enabled whatever their profiles).
    pub requested: Vec<String>,
    pub read_file: &'a dyn Fn(&str) -> Result<String, String>,
}

pub struct Loaded {
    pub project: Project,
    pub warnings: Vec<String>,
}

pub fn load(input: &Input) -> Result<Loaded, ComposeError> {
    if input.files.is_empty() {
        return Err(ComposeError::plain("no compose file given"));
    }
    let mut files = Files::default();
    let mut warnings = Vec::new();
    let mut trees = Vec::new();
    for (path, text) in &input.files {
        let idx = files.names.len() as u32;
        files.names.push(path.clone());
        let mut tree = yaml::parse(text, idx, path)?;
        let mut env = Env {
            lookup: input.env,
            unset: Vec::new(),
        };
        interpolate_tree(&mut tree, &mut Vec::new(), &mut env, &files)?;
        for name in env.unset {
            warnings.push(format!(
                "the {name:?} variable is not set, defaulting to a blank string"
            ));
        }
        trees.push(tree);
    }
    for (i, tree) in trees.iter_mut().enumerate() {
        let dir = parent_dir(&input.files[i].0);
        resolve_extends(tree, &dir, &mut files, input, &mut warnings)?;
    }
    let mut root = trees.remove(0);
    if let Some(services) = root.get_mut("services") {
        if let yaml::Value::Map(m) = &mut services.value {
            m.iter_mut().for_each(|(_, s)| prepare_service(s));
        }
    }
    for t in &trees {
        merge_files(&mut root, t);
    }
    let file_name = root.get("name").and_then(Node::scalar_text);
    let env_name = (input.env)("COMPOSE_PROJECT_NAME");
    let dir_base = input
        .working_dir
        .rsplit('/')
        .find(|s| !s.is_empty())
        .unwrap_or("");
    let name = super::name::choose(
        input.project_name.as_deref(),
        env_name.as_deref(),
        file_name.as_deref(),
        dir_base,
    )
    .map_err(ComposeError::plain)?;
    let mut norm = Normalizer {
        files: &files,
        working_dir: &input.working_dir,
        project: &name,
        lookup: input.env,
        read_file: input.read_file,
        warnings: Vec::new(),
    };
    let mut project = norm.project(&root, &name, &input.profiles, &input.requested)?;
    warnings.append(&mut norm.warnings);
    project.config_files = input.files.iter().map(|(p, _)| p.clone()).collect();
    for r in &input.requested {
        if !project.services.contains_key(r) {
            return Err(ComposeError::plain(format!("no such service: {r}")));
        }
    }
    super::validate::validate(&project, &files)?;
    Ok(Loaded { project, warnings })
}

fn parent_dir(path: &str) -> String {
    match path.rfind('/') {
        Some(0) => "/".into(),
        Some(i) => path[..i].to_string(),
        None => ".".into(),
    }
}

/// Replaces each service that `extends` another by the merge of the base and itself.
fn resolve_extends(
    tree: &mut Node,
    dir: &str,
    files: &mut Files,
    input: &Input,
    warnings: &mut Vec<String>,
) -> Result<(), ComposeError> {
    let names: Vec<String> = match tree.get("services").and_then(Node::as_map) {
        Some(m) => m.iter().map(|(k, _)| k.name.clone()).collect(),
        None => return Ok(()),
    };
    for name in names {
        let mut stack = Vec::new();
        let resolved = extended_service(tree, dir, &name, files, input, &mut stack, warnings)?;
        if let Some(services) = tree.get_mut("services") {
            services.set(&name, resolved);
        }
    }
    Ok(())
}

/// The service `name` of `tree` with its `extends` chain applied.
fn extended_service(
    tree: &Node,
    dir: &str,
    name: &str,
    files: &mut Files,
    input: &Input,
    stack: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Result<Node, ComposeError> {
    let service = tree
        .get("services")
        .and_then(|s| s.get(name))
        .cloned()
        .ok_or_else(|| ComposeError::plain(format!("no such service to extend: {name}")))?;
    let Some(ext) = service.get("extends") else {
        return Ok(service);
    };
    let here = format!("{dir}#{name}");
    if stack.contains(&here) {
        stack.push(here);
        return Err(files.error(
            ext.pos,
            &format!("services.{name}.extends"),
            format!("circular extends: {}", stack.join(" -> ")),
        ));
    }
    stack.push(here);
    let (base_name, base_file) = match ext.scalar_text() {
        Some(t) => (t, None),
        None => (
            ext.get("service").and_then(Node::scalar_text).ok_or_else(|| {
                files.error(ext.pos, &format!("services.{name}.extends"), "needs a service")
            })?,
            ext.get("file").and_then(Node::scalar_text),
        ),
    };
    let mut base = match base_file {
        None => {
            if tree.get("services").and_then(|s| s.get(&base_name)).is_none() {
                return Err(files.error(
                    ext.pos,
                    &format!("services.{name}.extends"),
                    format!("service {base_name:?} not found"),
                ));
            }
            extended_service(tree, dir, &base_name, files, input, stack, warnings)?
        }
        Some(f) => {
            let path = resolve_path(dir, &f, input.env);
            let text = (input.read_file)(&path).map_err(|e| {
                files.error(
                    ext.pos,
                    &format!("services.{name}.extends.file"),
                    format!("{path}: {e}"),
                )
            })?;
            let idx = files.names.len() as u32;
            files.names.push(path.clone());
            let mut other = yaml::parse(&text, idx, &path)?;
            let mut env = Env {
                lookup: input.env,
                unset: Vec::new(),
            };
            interpolate_tree(&mut other, &mut Vec::new(), &mut env, files)?;
            for v in env.unset {
                warnings.push(format!(
                    "the {v:?} variable is not set, defaulting to a blank string"
                ));
            }
            if other.get("services").and_then(|s| s.get(&base_name)).is_none() {
                return Err(files.error(
                    ext.pos,
                    &format!("services.{name}.extends"),
                    format!("service {base_name:?} not found in {path}"),
                ));
            }
            extended_service(
                &other,
                &parent_dir(&path),
                &base_name,
                files,
                input,
                stack,
                warnings,
            )?
        }
    };
    stack.pop();
    let mut local = service.clone();
    local.remove("extends");
    prepare_service(&mut base);
    prepare_service(&mut local);
    merge_service(&mut base, &local);
    base.pos = service.pos;
    Ok(base)
}
