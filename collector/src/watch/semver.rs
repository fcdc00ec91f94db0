//! Semantic version ordering, for one warning: a deploy whose version is not greater than
//! the version it replaces — the `--previous` given, the last deployed one, or what the
//! probes report running (Cloudron refuses such manifests; elsewhere it usually means a
//! wrong tag or an unannounced rollback). Versions that are not semver are not compared.
//! Also [`same_version`]: equality up to a leading `v`, which every version rule uses.

use semver::{BuildMetadata, Version};

/// Versions equal up to a leading `v`.
pub fn same_version(a: &str, b: &str) -> bool {
    let strip = |v: &str| v.trim().trim_start_matches(['v', 'V']).to_string();
    strip(a) == strip(b)
}

/// `MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]` with an optional leading `v`, by the `semver`
/// crate's strict grammar (`01.2.3` is not semver); `None` when the text is not semver.
/// Build metadata is dropped: it takes no part in precedence.
fn parse(text: &str) -> Option<Version> {
    let text = text.trim();
    let text = text.strip_prefix(['v', 'V']).unwrap_or(text);
    let mut version = Version::parse(text).ok()?;
    version.build = BuildMetadata::EMPTY;
    Some(version)
}

/// The warning for deploying `new` over the versions in `replaces` (what each one is,
/// and the version), naming every one that is semver and not lower than `new`.
pub fn not_increasing_warning(new: &str, replaces: &[(String, String)]) -> Option<String> {
    let parsed = parse(new)?;
    let mut not_lower: Vec<(&str, Vec<&str>)> = Vec::new();
    for (what, version) in replaces {
        if parse(version).is_none_or(|old| parsed > old) {
            continue;
        }
        match not_lower.iter_mut().find(|(v, _)| v == version) {
            Some((_, whats)) => whats.push(what),
            None => not_lower.push((version, vec![what])),
        }
    }
    if not_lower.is_empty() {
        return None;
    }
    let named: Vec<String> = not_lower
        .iter()
        .map(|(version, whats)| format!("{} {version}", whats.join(" and ")))
        .collect();
    Some(format!(
        "version {new} is not greater than {} (semver); \
         if this is not a deliberate rollback, bump the version",
        named.join(", nor ")
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn orders_like_semver() {
        let v = |t| parse(t);
        assert!(v("0.1.9") > v("0.1.8"));
        assert!(v("0.1.10") > v("0.1.9"));
        assert!(v("v1.0.0") > v("1.0.0-rc.1"));
        assert!(v("1.0.0-rc.2") > v("1.0.0-rc.1"));
        assert!(v("1.0.0-alpha") < v("1.0.0-alpha.1"));
        assert_eq!(v("1.0.0+build.5"), v("1.0.0"));
    }

    #[test]
    fn non_semver_is_not_parsed() {
        assert_eq!(parse("sha-abcdef"), None);
        assert_eq!(parse("1.2"), None);
        assert_eq!(parse("1.2.3.4"), None);
        assert_eq!(parse("1.2.x"), None);
    }

    #[test]
    fn leading_zeros_are_not_semver() {
        assert_eq!(parse("01.2.3"), None);
        assert_eq!(parse("1.02.3"), None);
        assert_eq!(parse("1.2.3-01"), None);
        assert!(not_increasing_warning("01.2.3", &last("1.2.4")).is_none());
        assert!(parse("1.2.3").is_some());
    }

    fn last(version: &str) -> Vec<(String, String)> {
        vec![("the last deployed version".into(), version.into())]
    }

    #[test]
    fn warns_only_when_not_greater() {
        assert!(not_increasing_warning("0.1.8", &last("0.1.9")).is_some());
        assert!(not_increasing_warning("0.1.9", &last("0.1.9")).is_some());
        assert!(not_increasing_warning("0.1.10", &last("0.1.9")).is_none());
        assert!(not_increasing_warning("sha-1", &last("0.1.9")).is_none());
    }

    #[test]
    fn previous_and_reported_versions_are_compared_too() {
        let replaces = vec![
            ("--previous".to_string(), "0.1.8".to_string()),
            ("the version r-1 reports".to_string(), "0.1.8".to_string()),
            ("the version r-2 reports".to_string(), "0.1.7".to_string()),
        ];
        assert_eq!(
            not_increasing_warning("0.1.8", &replaces).unwrap(),
            "version 0.1.8 is not greater than --previous and the version r-1 reports 0.1.8 \
             (semver); if this is not a deliberate rollback, bump the version"
        );
    }
}
