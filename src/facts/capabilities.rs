//! What the cluster supports, and how that is found out.

use std::str::FromStr;

/// What the cluster supports.
#[derive(Clone, Debug)]
pub struct Capabilities {
    pub native_sidecars: bool,
    /// Where that came from, for `explain` (e.g. "Kubernetes v1.36.2").
    pub source: String,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            native_sidecars: true,
            source: "assumed Kubernetes 1.29+".into(),
        }
    }
}

/// How `--native-sidecars` overrides detection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NativeSidecars {
    #[default]
    Auto,
    Always,
    Never,
}

impl FromStr for NativeSidecars {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(NativeSidecars::Auto),
            "always" => Ok(NativeSidecars::Always),
            "never" => Ok(NativeSidecars::Never),
            _ => Err(format!("{s:?} is not auto, always or never")),
        }
    }
}

/// Major and minor of a Kubernetes version string: `v1.30.4-eks-abc`,
/// `v1.29.0+k3s1`, `1.36`, `1.28+` (GKE's minor) all parse.
pub fn parse_version(s: &str) -> Option<(u32, u32)> {
    let s = s.trim().trim_start_matches(['v', 'V']);
    let mut parts = s.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor_raw = parts.next()?;
    let digits: String = minor_raw.chars().take_while(char::is_ascii_digit).collect();
    Some((major, digits.parse().ok()?))
}

impl Capabilities {
    /// Native sidecars are on by default from Kubernetes 1.29.
    pub fn detect(version: Option<&str>, mode: NativeSidecars) -> Capabilities {
        match (mode, version) {
            (NativeSidecars::Always, _) => Capabilities {
                native_sidecars: true,
                source: "--native-sidecars=always".into(),
            },
            (NativeSidecars::Never, _) => Capabilities {
                native_sidecars: false,
                source: "--native-sidecars=never".into(),
            },
            (NativeSidecars::Auto, Some(v)) => match parse_version(v) {
                Some(mm) => Capabilities {
                    native_sidecars: mm >= (1, 29),
                    source: format!("Kubernetes {v}"),
                },
                None => Capabilities {
                    native_sidecars: false,
                    source: format!(
                        "unrecognised Kubernetes version {v:?}; assuming no native sidecars"
                    ),
                },
            },
            (NativeSidecars::Auto, None) => Capabilities::default(),
        }
    }
}
