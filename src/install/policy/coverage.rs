//! Which requests policy mode injects and which need the webhook, known
//! before anyone picks a mode: every template alone and every pair. A
//! request for more templates compiles when each template and each pair
//! in it does, since the engine's rules between templates are pairwise.
//! What depends on the pod itself (a conflict with what it has, parameter
//! values, Pod Security) is in `STEPS_ASIDE`.

use std::fmt;

use super::members::{Member, Role, between, injecting};
use crate::template::Scope;

/// One request combination: one template, or two.
pub struct Combination {
    pub templates: Vec<String>,
    /// `None`: the policy injects it; else why the webhook must.
    pub webhook: Option<String>,
    /// What the policy does that is worth knowing (a parameter left at its
    /// default, objects the two share).
    pub note: Option<String>,
}

impl fmt::Display for Combination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = self.templates.join(" + ");
        match (&self.webhook, &self.note) {
            (Some(why), _) => write!(f, "{names}: needs the webhook: {why}"),
            (None, Some(note)) => write!(f, "{names}: policy ({note})"),
            (None, None) => write!(f, "{names}: policy"),
        }
    }
}

pub struct Coverage {
    pub combinations: Vec<Combination>,
}

impl Coverage {
    /// How many combinations the policy injects, of how many.
    pub fn counts(&self) -> (usize, usize) {
        let compiled = self
            .combinations
            .iter()
            .filter(|c| c.webhook.is_none())
            .count();
        (compiled, self.combinations.len())
    }

    pub fn single(&self, name: &str) -> Option<&Combination> {
        self.combinations
            .iter()
            .find(|c| c.templates.len() == 1 && c.templates[0] == name)
    }
}

fn single(m: &Member) -> Combination {
    let mut notes = Vec::new();
    let webhook = match &m.role {
        Role::Webhook(reasons) => Some(reasons.join("; ")),
        Role::DryRun => {
            notes
                .push("mode dryRun: never changes the pod; warns that it was selected".to_string());
            None
        }
        Role::Injects => {
            if !m.t.spec.parameters.is_empty() {
                notes.push("parameters at their defaults; another value needs the webhook".into());
            }
            None
        }
    };
    let mut name = m.t.name.clone();
    if let Scope::Namespace(ns) = &m.t.scope {
        name = format!("{ns}/{name}");
    }
    Combination {
        templates: vec![name],
        webhook,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
    }
}

pub(super) fn coverage(members: &[Member]) -> Coverage {
    let mut combinations: Vec<Combination> = members.iter().map(single).collect();
    let injecting: Vec<&Member> = injecting(members).collect();
    for (i, a) in injecting.iter().enumerate() {
        for b in &injecting[i + 1..] {
            let pair = between(a, b);
            let mut notes = Vec::new();
            if let Some((why, when)) = &pair.conflict {
                let whe = if when.is_some() {
                    " where they meet"
                } else {
                    ""
                };
                notes.push(format!(
                    "they {why}: the second in the request's order is skipped{whe}, as the engine does"
                ));
            }
            if !pair.shared.is_empty() {
                let items: Vec<String> = pair.shared.iter().map(ToString::to_string).collect();
                notes.push(format!("share {}, added once", items.join(", ")));
            }
            let (webhook, note) = (None, (!notes.is_empty()).then(|| notes.join("; ")));
            combinations.push(Combination {
                templates: vec![a.t.name.clone(), b.t.name.clone()],
                webhook,
                note,
            });
        }
    }
    Coverage { combinations }
}
