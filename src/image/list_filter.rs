//! Docker's image filters (`GET /images/json`, `POST /images/prune`): `dangling`, `label`,
//! `label!` (prune), `before`, `since`, `until` (prune), `reference`. Pure: times come in
//! resolved, images as summaries.

use super::build::dockerignore::glob_match;
use super::ImageSummary;
use std::collections::BTreeMap;

/// Which filter keys an endpoint accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    List,
    Prune,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct ImageFilter {
    pub dangling: Option<bool>,
    /// `key` or `key=value`; all must match.
    pub labels: Vec<String>,
    /// `key` or `key=value`; none may match.
    pub not_labels: Vec<String>,
    pub references: Vec<String>,
    /// Unix seconds: only images created strictly before / after.
    pub before: Option<i64>,
    pub since: Option<i64>,
    /// Unix seconds: only images created before (prune's `until`).
    pub until: Option<i64>,
}

impl ImageFilter {
    /// Validate `filters`. `created_of` gives the creation time of a named image (`before`,
    /// `since`); `until_of` turns an `until` value (timestamp or duration) into Unix seconds.
    pub fn parse(
        filters: &BTreeMap<String, Vec<String>>,
        endpoint: Endpoint,
        created_of: impl Fn(&str) -> Result<i64, String>,
        until_of: impl Fn(&str) -> Option<i64>,
    ) -> Result<ImageFilter, String> {
        let mut f = ImageFilter::default();
        for (key, values) in filters {
            match (key.as_str(), endpoint) {
                ("dangling", _) => {
                    for v in values {
                        let want = match v.to_ascii_lowercase().as_str() {
                            "true" | "1" => true,
                            "false" | "0" => false,
                            _ => return Err(format!("invalid filter 'dangling={v}'")),
                        };
                        if f.dangling.is_some_and(|d| d != want) {
                            return Err("invalid filter: dangling=true and dangling=false together".into());
                        }
                        f.dangling = Some(want);
                    }
                }
                ("label", _) => f.labels.extend(values.iter().cloned()),
                ("label!", Endpoint::Prune) => f.not_labels.extend(values.iter().cloned()),
                ("reference", Endpoint::List) => f.references.extend(values.iter().cloned()),
                ("before", Endpoint::List) => {
                    for v in values {
                        f.before = Some(created_of(v)?);
                    }
                }
                ("since", Endpoint::List) => {
                    for v in values {
                        f.since = Some(created_of(v)?);
                    }
                }
                ("until", _) => {
                    for v in values {
                        let t = until_of(v).ok_or_else(|| {
                            format!("invalid filter 'until={v}': not a timestamp or duration")
                        })?;
                        f.until = Some(t);
                    }
                }
                (other, _) => return Err(format!("invalid filter '{other}'")),
            }
        }
        Ok(f)
    }

    /// Whether `img` passes every filter but `dangling` (whose meaning differs between list and
    /// prune). With `reference`, only the matching names stay in `RepoTags`/`RepoDigests`, as
    /// docker shows them.
    pub fn keep(&self, img: &mut ImageSummary) -> bool {
        if self.before.is_some_and(|b| img.created >= b) || self.since.is_some_and(|s| img.created <= s) {
            return false;
        }
        if self.until.is_some_and(|u| img.created >= u) {
            return false;
        }
        if !self.labels.iter().all(|l| has_label(&img.labels, l)) {
            return false;
        }
        if self.not_labels.iter().any(|l| has_label(&img.labels, l)) {
            return false;
        }
        if !self.references.is_empty() {
            let matches = |name: &String| self.references.iter().any(|p| reference_matches(p, name));
            img.repo_tags.retain(matches);
            img.repo_digests.retain(matches);
            if img.repo_tags.is_empty() && img.repo_digests.is_empty() {
                return false;
            }
        }
        true
    }
}

fn has_label(labels: &BTreeMap<String, String>, want: &str) -> bool {
    match want.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(want),
    }
}

/// docker's `reference.FamiliarMatch`: the pattern against the familiar `repo:tag` (or
/// `repo@digest`), then against the repository alone.
pub fn reference_matches(pattern: &str, name: &str) -> bool {
    if glob_match(pattern, name) {
        return true;
    }
    let repo = match name.split_once('@') {
        Some((repo, _)) => repo,
        None => {
            let slash = name.rfind('/').map_or(0, |i| i + 1);
            name[slash..].rfind(':').map_or(name, |i| &name[..slash + i])
        }
    };
    glob_match(pattern, repo)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(tags: &[&str], created: i64, labels: &[(&str, &str)]) -> ImageSummary {
        ImageSummary {
            id: "sha256:00".into(),
            parent_id: String::new(),
            repo_tags: tags.iter().map(|s| s.to_string()).collect(),
            repo_digests: vec![],
            created,
            size: 0,
            shared_size: -1,
            virtual_size: 0,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            containers: -1,
        }
    }

    fn filters(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<String>> {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in pairs {
            m.entry(k.to_string()).or_default().push(v.to_string());
        }
        m
    }

    fn parse(pairs: &[(&str, &str)], endpoint: Endpoint) -> Result<ImageFilter, String> {
        ImageFilter::parse(
            &filters(pairs),
            endpoint,
            |name| {
                if name == "base" {
                    Ok(100)
                } else {
                    Err(format!("No such image: {name}"))
                }
            },
            |v| v.parse().ok(),
        )
    }

    #[test]
    fn references_match_like_docker() {
        assert!(reference_matches("busybox", "busybox:latest"));
        assert!(reference_matches("busy*", "busybox:1"));
        assert!(reference_matches("busybox:1*", "busybox:1.36"));
        assert!(!reference_matches("busybox:2", "busybox:1"));
        assert!(!reference_matches("*", "team/app:1"), "* does not cross /");
        assert!(reference_matches("*/*", "team/app:1"));
        assert!(reference_matches(
            "localhost:5000/app",
            "localhost:5000/app@sha256:ab"
        ));
    }

    #[test]
    fn reference_filter_keeps_only_matching_names() {
        let f = parse(&[("reference", "a*")], Endpoint::List).unwrap();
        let mut img = summary(&["a:1", "b:1"], 0, &[]);
        assert!(f.keep(&mut img));
        assert_eq!(img.repo_tags, ["a:1"]);
        assert!(!f.keep(&mut summary(&["b:1"], 0, &[])));
        assert!(!f.keep(&mut summary(&[], 0, &[])));
    }

    #[test]
    fn before_since_labels_and_until() {
        let f = parse(&[("before", "base")], Endpoint::List).unwrap();
        assert!(f.keep(&mut summary(&[], 99, &[])));
        assert!(!f.keep(&mut summary(&[], 100, &[])));
        let f = parse(&[("since", "base")], Endpoint::List).unwrap();
        assert!(f.keep(&mut summary(&[], 101, &[])));
        assert!(!f.keep(&mut summary(&[], 100, &[])));
        let f = parse(&[("label", "a=1"), ("label", "b")], Endpoint::List).unwrap();
        assert!(f.keep(&mut summary(&[], 0, &[("a", "1"), ("b", "x")])));
        assert!(!f.keep(&mut summary(&[], 0, &[("a", "2"), ("b", "x")])));
        let f = parse(&[("label!", "keep")], Endpoint::Prune).unwrap();
        assert!(!f.keep(&mut summary(&[], 0, &[("keep", "")])));
        let f = parse(&[("until", "50")], Endpoint::Prune).unwrap();
        assert!(f.keep(&mut summary(&[], 49, &[])));
        assert!(!f.keep(&mut summary(&[], 50, &[])));
    }

    #[test]
    fn bad_filters_are_named() {
        assert_eq!(
            parse(&[("colour", "red")], Endpoint::List).unwrap_err(),
            "invalid filter 'colour'"
        );
        assert_eq!(
            parse(&[("dangling", "maybe")], Endpoint::List).unwrap_err(),
            "invalid filter 'dangling=maybe'"
        );
        assert_eq!(
            parse(&[("before", "nope")], Endpoint::List).unwrap_err(),
            "No such image: nope"
        );
        assert!(parse(&[("until", "soon")], Endpoint::Prune)
            .unwrap_err()
            .contains("until=soon"));
        assert!(parse(&[("label!", "x")], Endpoint::List).is_err());
    }
}
