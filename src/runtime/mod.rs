//! Containers: spec, namespaces, mounts, cgroups, capabilities, seccomp, the shim, exec.

pub mod shim;
