//! Manifests and indexes (Docker v2 schema 2 and OCI), and choosing the board's platform from
//! an index. Pure: no I/O.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// What a manifest GET accepts, in the order tried.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest or an index, told apart by media type (or by which fields are present,
/// since OCI makes `mediaType` optional).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    #[serde(default)]
    schema_version: u32,
    #[serde(default)]
    media_type: String,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    manifests: Option<Vec<Descriptor>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Image {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
    Index(Vec<Descriptor>),
}

/// Parse manifest bytes; `content_type` is the response's Content-Type.
pub fn parse(bytes: &[u8], content_type: &str) -> Result<Parsed, String> {
    let raw: RawManifest =
        serde_json::from_slice(bytes).map_err(|e| format!("manifest is not valid JSON: {e}"))?;
    let media_type = if raw.media_type.is_empty() {
        content_type.split(';').next().unwrap_or("").trim().to_string()
    } else {
        raw.media_type.clone()
    };
    if raw.schema_version == 1 || media_type.contains("manifest.v1+") && media_type.contains("docker") {
        return Err(
            "Docker schema 1 manifests are not supported; push the image again with a current client".into(),
        );
    }
    let is_index = media_type == OCI_INDEX || media_type == DOCKER_LIST;
    match (is_index, raw.config, raw.manifests) {
        (true, _, Some(m)) | (false, None, Some(m)) => Ok(Parsed::Index(m)),
        (false, Some(config), _) => Ok(Parsed::Image {
            config,
            layers: raw.layers,
        }),
        _ => Err(format!("unsupported manifest (media type {media_type:?})")),
    }
}

/// A platform as `--platform` spells it: `linux/arm64/v8`, `linux/arm/v7`, `amd64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Wanted {
    /// The running board: linux/amd64, linux/arm64/v8 or linux/arm/v7.
    pub fn host() -> Wanted {
        let (arch, variant) = crate::image::config::host_architecture();
        Wanted {
            os: "linux".into(),
            architecture: arch.into(),
            variant: variant.map(String::from),
        }
    }

    pub fn parse(s: &str) -> Result<Wanted, String> {
        let parts: Vec<&str> = s.trim().split('/').collect();
        let bad = || format!("invalid platform {s:?}: expected os/arch[/variant], e.g. linux/arm64");
        let (os, arch, variant) = match parts.as_slice() {
            [arch] if !arch.is_empty() && *arch != "linux" => ("linux", *arch, None),
            [os, arch] => (*os, *arch, None),
            [os, arch, variant] => (*os, *arch, Some(*variant)),
            _ => return Err(bad()),
        };
        if os.is_empty() || arch.is_empty() || variant == Some("") {
            return Err(bad());
        }
        let os = os.to_ascii_lowercase();
        let (arch, mut variant) =
            normalise_arch(&arch.to_ascii_lowercase(), variant.map(str::to_ascii_lowercase));
        if arch == "arm" && variant.is_none() {
            variant = Some("v7".into());
        }
        Ok(Wanted {
            os,
            architecture: arch,
            variant,
        })
    }

    /// How well a descriptor's platform fits: None when it cannot run here, higher is better.
    fn score(&self, p: &Platform) -> Option<u32> {
        let (arch, variant) = normalise_arch(&p.architecture, p.variant.clone());
        if !p.os.eq_ignore_ascii_case(&self.os) || arch != self.architecture {
            return None;
        }
        match (self.variant.as_deref(), variant.as_deref()) {
            (want, got) if want == got => Some(100),
            // arm64 images rarely say v8; an unspecified variant fits.
            (Some("v8"), None) if arch == "arm64" => Some(99),
            (None, _) => Some(50),
            // An armv7 board runs v6 and v5 images too (docker's matcher does the same).
            (Some(want), Some(got)) if arch == "arm" => {
                let w = want.trim_start_matches('v').parse::<u32>().ok()?;
                let g = got.trim_start_matches('v').parse::<u32>().ok()?;
                (g < w).then(|| 90 - (w - g))
            }
            (Some(_), None) => Some(10),
            _ => None,
        }
    }
}

impl std::fmt::Display for Wanted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

fn normalise_arch(arch: &str, variant: Option<String>) -> (String, Option<String>) {
    match arch {
        "x86_64" | "x86-64" => ("amd64".into(), None),
        "aarch64" => ("arm64".into(), variant.or(Some("v8".into()))),
        "arm64" => ("arm64".into(), variant.or(Some("v8".into()))),
        "armhf" => ("arm".into(), Some("v7".into())),
        "armel" => ("arm".into(), Some("v6".into())),
        other => (other.into(), variant),
    }
}

/// The index entry that best fits `want` (attestation manifests have platform unknown/unknown
/// and never match).
pub fn select<'a>(manifests: &'a [Descriptor], want: &Wanted) -> Option<&'a Descriptor> {
    manifests
        .iter()
        .filter_map(|d| {
            let p = d.platform.as_ref()?;
            Some((want.score(p)?, d))
        })
        .max_by_key(|(score, _)| *score)
        .map(|(_, d)| d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(arch: &str, variant: Option<&str>) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: format!("sha256:{arch}{}", variant.unwrap_or("")),
            platform: Some(Platform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: variant.map(String::from),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn picks_each_board_platform() {
        let idx = vec![
            desc("amd64", None),
            desc("arm", Some("v6")),
            desc("arm", Some("v7")),
            desc("arm64", Some("v8")),
            Descriptor {
                platform: Some(Platform {
                    architecture: "unknown".into(),
                    os: "unknown".into(),
                    variant: None,
                }),
                ..Default::default()
            },
        ];
        let pick = |s: &str| select(&idx, &Wanted::parse(s).unwrap()).map(|d| d.digest.clone());
        assert_eq!(pick("linux/amd64").unwrap(), "sha256:amd64");
        assert_eq!(pick("linux/arm64").unwrap(), "sha256:arm64v8");
        assert_eq!(pick("linux/arm64/v8").unwrap(), "sha256:arm64v8");
        assert_eq!(pick("linux/arm/v7").unwrap(), "sha256:armv7");
        assert_eq!(pick("linux/arm").unwrap(), "sha256:armv7");
        assert_eq!(pick("linux/arm/v6").unwrap(), "sha256:armv6");
        assert_eq!(pick("linux/s390x"), None);
        // An armv7 board falls back to v6 when there is no v7 image.
        let v6_only = vec![desc("amd64", None), desc("arm", Some("v6"))];
        assert_eq!(
            select(&v6_only, &Wanted::parse("linux/arm/v7").unwrap())
                .unwrap()
                .digest,
            "sha256:armv6"
        );
        // arm64 entries without a variant still fit an arm64/v8 board.
        let no_variant = vec![desc("arm64", None)];
        assert!(select(&no_variant, &Wanted::parse("linux/arm64/v8").unwrap()).is_some());
    }

    #[test]
    fn platform_strings() {
        assert!(Wanted::parse("").is_err());
        assert!(Wanted::parse("linux/").unwrap_err().contains("os/arch"));
        assert_eq!(
            Wanted::parse("linux/aarch64").unwrap().to_string(),
            "linux/arm64/v8"
        );
        assert_eq!(Wanted::parse("amd64").unwrap().to_string(), "linux/amd64");
    }

    #[test]
    fn tells_manifests_from_indexes() {
        let m = br#"{"schemaVersion":2,"config":{"digest":"sha256:a","size":1},"layers":[]}"#;
        assert!(matches!(parse(m, OCI_MANIFEST).unwrap(), Parsed::Image { .. }));
        let i = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(parse(i, "").unwrap(), Parsed::Index(_)));
        assert!(parse(br#"{"schemaVersion":1,"fsLayers":[]}"#, "")
            .unwrap_err()
            .contains("schema 1"));
        assert!(parse(b"nope", "").is_err());
    }
}
