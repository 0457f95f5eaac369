//! The `tandem.dev/status` record: which templates (name and content hash) a
//! pod carries and the names of everything injected. A second admission of the
//! same pod reads it and changes nothing.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    #[serde(default)]
    pub templates: Vec<Injected>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub init_containers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Injected {
    pub name: String,
    pub hash: String,
}

impl Status {
    /// Reads the annotation. `Err` carries the reason when it is present but
    /// not a status Tandem wrote; the engine then warns and treats the pod as
    /// not injected (conflict checks still stop a double injection).
    pub fn parse(value: &str) -> Result<Status, String> {
        serde_json::from_str(value).map_err(|e| format!("tandem.dev/status is not valid: {e}"))
    }

    pub fn template(&self, name: &str) -> Option<&Injected> {
        self.templates.iter().find(|t| t.name == name)
    }

    pub fn to_annotation(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}
