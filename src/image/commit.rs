//! `commit` (a container's overlay upper dir becomes a layer on top of its image) and
//! `export` (the container's whole filesystem, flattened, as one tar).

use super::build::diff::{header_from, open_nofollow, upper_to_tar};
use super::build::rootfs::RootfsView;
use super::config::{self, ConfigFile, History};
use super::store::{hex_of, tag_name};
use super::{ImageError, ImageStore};
use std::fs::{self, File};
use std::io::{self, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// What `docker commit` takes besides the container.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// `repo[:tag]`, or empty for an untagged image.
    pub reference: String,
    pub comment: String,
    pub author: String,
    /// Dockerfile instructions (`CMD ["sh"]`, `ENV A=1`) applied to the config.
    pub changes: Vec<String>,
}

impl ImageStore {
    /// Turn `upper` (a container's overlay upper dir) into a layer on top of `image_id`, with
    /// `container_config` (the container's effective config) plus `opts.changes` as the new
    /// image's config. Returns `sha256:<id>`.
    pub fn commit_container(
        &self,
        image_id: &str,
        upper: &Path,
        container_config: config::ImageConfig,
        opts: &CommitOptions,
    ) -> Result<String, ImageError> {
        let tag = match opts.reference.as_str() {
            "" => None,
            r => Some(tag_name(r)?),
        };
        let mut image_config = container_config;
        config::apply_changes(&mut image_config, &opts.changes).map_err(ImageError::Invalid)?;
        let bytes = fs::read(self.config_path(hex_of(image_id)))?;
        let mut cfg: ConfigFile = serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::Invalid(format!("image {image_id}: {e}")))?;
        let tmp = super::build::temp_path(self, "commit");
        let result = (|| {
            let f = File::create(&tmp)?;
            upper_to_tar(upper, io::BufWriter::new(f))?;
            let mut pins = self.pins();
            let unpacked = self.ingest_layer(BufReader::new(File::open(&tmp)?), None, None, &mut pins)?;
            let now = crate::timefmt::format_go(crate::timefmt::now_nanos());
            cfg.created = Some(now.clone());
            cfg.author = (!opts.author.is_empty()).then(|| opts.author.clone());
            cfg.comment = (!opts.comment.is_empty()).then(|| opts.comment.clone());
            cfg.config = Some(image_config);
            cfg.rootfs.kind = "layers".into();
            cfg.rootfs.diff_ids.push(unpacked.meta.diff_id);
            cfg.history.push(History {
                created: Some(now),
                author: cfg.author.clone(),
                comment: cfg.comment.clone(),
                ..Default::default()
            });
            let bytes = serde_json::to_vec(&cfg).map_err(|e| ImageError::Invalid(e.to_string()))?;
            let tags: Vec<String> = tag.into_iter().collect();
            let hex = self.commit_image(&bytes, &tags)?;
            drop(pins);
            Ok(format!("sha256:{hex}"))
        })();
        let _ = fs::remove_file(&tmp);
        result
    }

    /// Write the merged filesystem of `upper` over the image's layers as one tar (no
    /// whiteouts: hidden entries are simply absent).
    pub fn export_rootfs(&self, image_id: &str, upper: &Path, out: impl Write) -> Result<(), ImageError> {
        let image = self.resolve(image_id)?;
        let mut layers: Vec<PathBuf> = vec![upper.to_path_buf()];
        layers.extend(self.layer_dirs(&image));
        let view = RootfsView::new(layers);
        let mut b = tar::Builder::new(out);
        export_dir(&view, &mut Vec::new(), &mut b)?;
        b.into_inner()?.flush()?;
        Ok(())
    }
}

fn export_dir<W: Write>(
    view: &RootfsView,
    comps: &mut Vec<String>,
    b: &mut tar::Builder<W>,
) -> io::Result<()> {
    for (name, host) in view.read_dir(comps) {
        comps.push(name);
        let rel = comps.join("/");
        let m = fs::symlink_metadata(&host)?;
        let ft = m.file_type();
        if ft.is_dir() {
            let mut h = header_from(&m, tar::EntryType::Directory);
            b.append_data(&mut h, format!("{rel}/"), io::empty())?;
            export_dir(view, comps, b)?;
        } else if ft.is_symlink() {
            let mut h = header_from(&m, tar::EntryType::Symlink);
            b.append_link(&mut h, &rel, fs::read_link(&host)?)?;
        } else if ft.is_file() {
            let mut h = header_from(&m, tar::EntryType::Regular);
            h.set_size(m.len());
            b.append_data(&mut h, &rel, BufReader::new(open_nofollow(&host)?))?;
        } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
            let kind = if ft.is_fifo() {
                tar::EntryType::Fifo
            } else if ft.is_char_device() {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            };
            let mut h = header_from(&m, kind);
            h.set_device_major(libc::major(m.rdev()))?;
            h.set_device_minor(libc::minor(m.rdev()))?;
            b.append_data(&mut h, &rel, io::empty())?;
        }
        comps.pop();
    }
    Ok(())
}
