//! The one seam to the kernel for mounts, namespaces and cgroups.
