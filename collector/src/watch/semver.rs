//! Semantic version ordering, for one warning: a deploy whose version is not greater than
//! the version it replaces — the `--previous` given, the last deployed one, or what the
//! probes report running (Cloudron refuses such manifests; elsewhere it usually means a
//! wrong tag or an unannounced rollback). Versions that are not semver are not compared.

use std::cmp::Ordering;

/// A parsed `MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]`, optional leading `v`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SemVer {
    core: [u64; 3],
    prerelease: Vec<String>,
}

impl SemVer {
    /// Parse, or `None` when the text is not semver.
    pub fn parse(text: &str) -> Option<SemVer> {
        let text = text.trim().trim_start_matches(['v', 'V']);
        let text = text.split_once('+').map_or(text, |(v, _build)| v);
        let (core, prerelease) = match text.split_once('-') {
            Some((core, pre)) if !pre.is_empty() => {
                (core, pre.split('.').map(String::from).collect())
            }
            Some(_) => return None,
            None => (text, Vec::new()),
        };
        let mut numbers = core.split('.');
        let mut parsed = [0u64; 3];
        for slot in &mut parsed {
            let part = numbers.next()?;
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            *slot = part.parse().ok()?;
        }
        if numbers.next().is_some() {
            return None;
        }
        Some(SemVer {
            core: parsed,
            prerelease,
        })
    }
}

impl Ord for SemVer {
    fn cmp(&self, other: &Self) -> Ordering {
        self.core.cmp(&other.core).then_with(|| {
            match (self.prerelease.is_empty(), other.prerelease.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => compare_prerelease(&self.prerelease, &other.prerelease),
            }
        })
    }
}

impl PartialOrd for SemVer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn compare_prerelease(a: &[String], b: &[String]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let order = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            (Err(_), Err(_)) => x.cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

/// The warning for deploying `new` over the versions in `replaces` (what each one is,
/// and the version), naming every one that is semver and not lower than `new`.
pub fn not_increasing_warning(new: &str, replaces: &[(String, String)]) -> Option<String> {
    let parsed = SemVer::parse(new)?;
    let mut not_lower: Vec<(&str, Vec<&str>)> = Vec::new();
    for (what, version) in replaces {
        if SemVer::parse(version).is_none_or(|old| parsed > old) {
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
        let v = |t| SemVer::parse(t);
        assert!(v("0.1.9") > v("0.1.8"));
        assert!(v("0.1.10") > v("0.1.9"));
        assert!(v("v1.0.0") > v("1.0.0-rc.1"));
        assert!(v("1.0.0-rc.2") > v("1.0.0-rc.1"));
        assert!(v("1.0.0-alpha") < v("1.0.0-alpha.1"));
        assert_eq!(v("1.0.0+build.5"), v("1.0.0"));
    }

    #[test]
    fn non_semver_is_not_parsed() {
        assert_eq!(SemVer::parse("sha-abcdef"), None);
        assert_eq!(SemVer::parse("1.2"), None);
        assert_eq!(SemVer::parse("1.2.3.4"), None);
        assert_eq!(SemVer::parse("1.2.x"), None);
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
