//! The lint of `tandem check` that needs the engine: two templates that
//! cannot both be injected into one pod.

use serde_json::json;

use super::conflicts::PodIndex;
use super::pod::PodView;
use crate::facts::Doc;
use crate::template::{Lint, Scope, Template};

/// Two templates that cannot both be injected into one pod, found by running
/// the engine's own conflict checks on a one-container pod.
pub fn collisions<'a>(templates: impl IntoIterator<Item = &'a Template>) -> Vec<Lint> {
    let templates: Vec<&Template> = templates.into_iter().collect();
    let pod = json!({"spec": {"containers": [{"name": "app"}]}});
    let pod = Doc::from(&pod);
    let view = PodView::new(&pod).expect("a one-container pod is well-formed");
    let mut out = Vec::new();
    for (i, a) in templates.iter().enumerate() {
        for b in &templates[i + 1..] {
            if a.scope != b.scope
                && !matches!(a.scope, Scope::Cluster)
                && !matches!(b.scope, Scope::Cluster)
            {
                continue;
            }
            let mut index = PodIndex::new(&view);
            let Ok(added) = index.check(a, true, &[0]) else {
                continue;
            };
            index.commit(a, true, &added);
            if let Err(conflicts) = index.check(b, true, &[0]) {
                for c in conflicts {
                    out.push(Lint {
                        template: b.name.clone(),
                        source: b.source.clone(),
                        field: "spec".into(),
                        message: format!("cannot be injected together with {}: {c}", a.name),
                    });
                }
            }
        }
    }
    out
}
