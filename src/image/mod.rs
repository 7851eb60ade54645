//! Images: content store, docker-save and OCI layouts, layers.
