//! Operator settings that shape decisions.

use std::str::FromStr;

use super::SYSTEM_NAMESPACES;

/// What to do with a requested template that does not exist.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnMissing {
    #[default]
    Warn,
    Deny,
}

impl FromStr for OnMissing {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "warn" => Ok(OnMissing::Warn),
            "deny" => Ok(OnMissing::Deny),
            _ => Err(format!("{s:?} is not warn or deny")),
        }
    }
}

/// Operator settings that shape decisions.
#[derive(Clone, Debug)]
pub struct Policy {
    pub on_missing: OnMissing,
    /// Namespaces never injected (system namespaces and Tandem's own).
    pub excluded_namespaces: Vec<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            on_missing: OnMissing::Warn,
            excluded_namespaces: SYSTEM_NAMESPACES.map(String::from).to_vec(),
        }
    }
}
