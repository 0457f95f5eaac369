//! A namespace's Pod Security Admission labels
//! (`pod-security.kubernetes.io/<mode>` and `<mode>-version`), read as the
//! API server reads them: a value it cannot parse counts as `restricted`
//! (level) or `latest` (version).

use std::collections::BTreeMap;
use std::fmt;

pub const POD_SECURITY_PREFIX: &str = "pod-security.kubernetes.io/";

/// Each mode's level label and version label.
const ENFORCE: (&str, &str) = (
    "pod-security.kubernetes.io/enforce",
    "pod-security.kubernetes.io/enforce-version",
);
const WARN: (&str, &str) = (
    "pod-security.kubernetes.io/warn",
    "pod-security.kubernetes.io/warn-version",
);
const AUDIT: (&str, &str) = (
    "pod-security.kubernetes.io/audit",
    "pod-security.kubernetes.io/audit-version",
);

/// A Pod Security Standards level, least strict first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

/// The version of the standard a level is checked at: `latest`, or the
/// Kubernetes minor release `v1.N` whose rules apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    Minor(u32),
    Latest,
}

impl Version {
    pub fn parse(s: &str) -> Option<Version> {
        if s == "latest" {
            return Some(Version::Latest);
        }
        let minor = s.strip_prefix("v1.")?;
        if minor.is_empty() || !minor.bytes().all(|b| b.is_ascii_digit()) || minor.starts_with('0')
        {
            return None;
        }
        minor.parse().ok().map(Version::Minor)
    }

    /// Whether rules that came with Kubernetes 1.`minor` apply.
    pub fn at_least(self, minor: u32) -> bool {
        match self {
            Version::Latest => true,
            Version::Minor(m) => m >= minor,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Version::Latest => f.write_str("latest"),
            Version::Minor(m) => write!(f, "v1.{m}"),
        }
    }
}

/// One mode's level and version, as `level:version` in messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Standard {
    pub level: Level,
    pub version: Version,
}

impl fmt::Display for Standard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.level.as_str(), self.version)
    }
}

/// What the namespace enforces, warns about and audits; a mode without a
/// label is absent (the cluster default, privileged unless configured).
/// `problems` names every label value that did not parse.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodSecurity {
    pub enforce: Option<Standard>,
    pub warn: Option<Standard>,
    pub audit: Option<Standard>,
    pub problems: Vec<String>,
}

impl PodSecurity {
    /// Reads the labels of a namespace. Runs for every pod that gets a
    /// template: a namespace without the labels costs three lookups.
    pub fn from_labels(labels: &BTreeMap<String, String>) -> PodSecurity {
        let mut problems = Vec::new();
        let mut mode = |(key, version_key): (&str, &str)| -> Option<Standard> {
            let v = labels.get(key)?;
            let version = labels.get(version_key);
            let level = Level::parse(v).unwrap_or_else(|| {
                problems.push(format!("{key}={v:?}: the API server applies restricted"));
                Level::Restricted
            });
            let version = match version {
                None => Version::Latest,
                Some(v) => Version::parse(v).unwrap_or_else(|| {
                    problems.push(format!(
                        "{version_key}={v:?}: the API server applies latest"
                    ));
                    Version::Latest
                }),
            };
            Some(Standard { level, version })
        };
        let enforce = mode(ENFORCE);
        let warn = mode(WARN);
        let audit = mode(AUDIT);
        PodSecurity {
            enforce,
            warn,
            audit,
            problems,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (format!("{POD_SECURITY_PREFIX}{k}"), v.to_string()))
            .collect()
    }

    #[test]
    fn labels_are_read_as_the_api_server_reads_them() {
        let ps = PodSecurity::from_labels(&labels(&[
            ("enforce", "baseline"),
            ("enforce-version", "v1.29"),
            ("warn", "restricted"),
        ]));
        assert_eq!(
            ps.enforce,
            Some(Standard {
                level: Level::Baseline,
                version: Version::Minor(29)
            })
        );
        assert_eq!(ps.warn.unwrap().to_string(), "restricted:latest");
        assert!(ps.audit.is_none() && ps.problems.is_empty());

        // What does not parse is restricted at latest, and said so.
        let ps = PodSecurity::from_labels(&labels(&[
            ("enforce", "Restricted"),
            ("enforce-version", "1.29"),
        ]));
        assert_eq!(ps.enforce.unwrap().to_string(), "restricted:latest");
        assert_eq!(ps.problems.len(), 2, "{:?}", ps.problems);
        // A version label alone sets nothing.
        assert_eq!(
            PodSecurity::from_labels(&labels(&[("enforce-version", "v1.30")])).enforce,
            None
        );
        for bad in ["v1", "v1.", "v2.1", "v1.x", "v1.029", "1.30"] {
            assert_eq!(Version::parse(bad), None, "{bad}");
        }
        assert!(Version::Minor(23).at_least(23) && !Version::Minor(22).at_least(23));
    }
}
