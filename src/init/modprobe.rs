//! `modprobe`: loads kernel modules by name or alias, the way the kernel asks for them.
//!
//! When a feature is first used (an overlay mount, a bridge or veth link, an nf_tables
//! expression) the kernel runs `/sbin/modprobe -q -- ALIAS`. On a firmware image that path is
//! this binary, so modules the board does not need at boot stay unloaded until then, and
//! boot is not held up by loading them. Resolution is in [`super::modules`]; this file reads
//! depmod's files and calls finit_module.

use std::fs;
use std::path::{Path, PathBuf};

use super::boot::load_one;
use super::modules::{self, DepMap, Resolved};

/// depmod's view of one module directory (/lib/modules/RELEASE).
pub struct ModuleDir {
    dir: PathBuf,
    deps: DepMap,
    aliases: Vec<(String, String)>,
    softdeps: std::collections::BTreeMap<String, Vec<String>>,
    builtin: Vec<String>,
}

impl ModuleDir {
    /// Reads modules.dep, .alias, .softdep and .builtin; missing files count as empty.
    pub fn open(dir: &Path) -> ModuleDir {
        let read = |name: &str| fs::read_to_string(dir.join(name)).unwrap_or_default();
        ModuleDir {
            dir: dir.to_path_buf(),
            deps: modules::parse_modules_dep(&read("modules.dep")),
            aliases: modules::parse_aliases(&read("modules.alias")),
            softdeps: modules::parse_softdeps(&read("modules.softdep")),
            builtin: modules::parse_builtin(&read("modules.builtin")),
        }
    }

    /// The running kernel's module directory.
    pub fn running() -> ModuleDir {
        let release = rustix::system::uname().release().to_string_lossy().into_owned();
        ModuleDir::open(&Path::new("/lib/modules").join(release))
    }

    /// Loads `request` (a module name or alias) with its dependencies; the number of
    /// modules the kernel took.
    pub fn load(&self, request: &str) -> Result<usize, String> {
        let names = match modules::resolve(request, &self.deps, &self.aliases, &self.softdeps, &self.builtin)
        {
            Resolved::BuiltIn => return Ok(0),
            Resolved::NotFound => {
                return Err(format!("module {request} not found in {}", self.dir.display()))
            }
            Resolved::Load(names) => names,
        };
        let wanted: Vec<&str> = names.iter().map(String::as_str).collect();
        let (order, errors) = modules::load_order(&self.deps, &wanted);
        if let Some(e) = errors.into_iter().next() {
            return Err(e);
        }
        let mut loaded = 0;
        for rel in order {
            loaded += usize::from(load_one(&self.dir.join(rel))?);
        }
        Ok(loaded)
    }
}

/// `modprobe [-q] [-a] [--] NAME...` (and `shoal modprobe ...`); returns the exit code.
/// Without `-a` only the first name is a module and the rest would be its parameters, which
/// shoal does not pass on, so they are refused.
pub fn main(args: &[String]) -> i32 {
    let mut quiet = false;
    let mut all = false;
    let mut names = Vec::new();
    let mut options_done = false;
    for a in args {
        match a.as_str() {
            "--" if !options_done => options_done = true,
            "-q" | "--quiet" if !options_done => quiet = true,
            "-a" | "--all" if !options_done => all = true,
            "-b" | "--use-blacklist" if !options_done => {}
            "-h" | "--help" if !options_done => {
                println!("Usage: modprobe [-q] [-a] [--] MODULE|ALIAS...");
                return 0;
            }
            flag if flag.starts_with('-') && !options_done => {
                eprintln!("modprobe: unsupported option {flag:?}");
                return 1;
            }
            name => names.push(name.to_string()),
        }
    }
    if names.is_empty() {
        eprintln!("modprobe: no module name given");
        return 1;
    }
    if !all && names.len() > 1 {
        eprintln!(
            "modprobe: module parameters are not supported ({:?})",
            &names[1..]
        );
        return 1;
    }
    let dir = ModuleDir::running();
    let mut status = 0;
    for name in &names {
        if let Err(e) = dir.load(name) {
            if !quiet {
                eprintln!("modprobe: {e}");
            }
            status = 1;
        }
    }
    status
}
