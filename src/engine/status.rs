//! The `tandem.dev/status` record: which templates (name and content hash) a
//! pod carries and the names of everything injected. A second admission of the
//! same pod reads it and changes nothing.

use serde::{Deserialize, Serialize};

use super::EngineError;
use crate::template::Template;

/// A `tandem.dev/status` that is not a record Tandem wrote.
#[derive(Debug, thiserror::Error)]
#[error("tandem.dev/status is not valid: {0}")]
pub struct InvalidStatus(#[source] serde_json::Error);

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Always written, so its presence is what marks Tandem's record: the
    /// companion ValidatingAdmissionPolicy, which cannot parse JSON, checks
    /// for a `"templates"` list, and the engine requires one too.
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
    pub fn parse(value: &str) -> Result<Status, InvalidStatus> {
        serde_json::from_str(value).map_err(InvalidStatus)
    }

    pub fn template(&self, name: &str) -> Option<&Injected> {
        self.templates.iter().find(|t| t.name == name)
    }

    /// Records an injected template: its name and hash, and the names of
    /// what it added.
    pub fn record(&mut self, t: &Template) {
        self.templates.push(Injected {
            name: t.name.clone(),
            hash: t.hash.clone(),
        });
        self.init_containers
            .extend(t.spec.init_containers.iter().map(|c| c.name.clone()));
        self.containers
            .extend(t.spec.containers.iter().map(|c| c.name.clone()));
        self.volumes
            .extend(t.spec.volumes.iter().map(|v| v.name.clone()));
    }

    pub fn to_annotation(&self) -> Result<String, EngineError> {
        serde_json::to_string(self).map_err(|e| EngineError::Encode {
            what: "the tandem.dev/status annotation",
            message: e.to_string(),
        })
    }
}
