//! Writing documents in the field order they were written in, so `inject`
//! gives back a manifest that diffs against its source only where Tandem
//! added something, and what it added reads like the template it came from:
//! `name` first, then the template's fields in the template's order. The
//! orders themselves are read beside the values (`facts::json::Order`).

use std::collections::HashMap;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

use crate::facts::json::Order;
use crate::template::TemplateSet;

/// The written order of every named object the templates add, by the group
/// of pod lists it lands in and its name.
#[derive(Default)]
pub(super) struct Added<'a> {
    items: HashMap<(&'static str, &'a str), &'a Order>,
}

/// The pod list an item lands in, grouped: a template container may become
/// a native sidecar among the init containers.
fn group(list: &str) -> Option<&'static str> {
    match list {
        "containers" | "initContainers" => Some("containers"),
        "volumes" => Some("volumes"),
        "volumeMounts" => Some("volumeMounts"),
        "env" => Some("env"),
        _ => None,
    }
}

impl<'a> Added<'a> {
    pub(super) fn of(templates: &'a TemplateSet) -> Added<'a> {
        let mut items = HashMap::new();
        for t in templates.all() {
            let spec = &t.written;
            let app = spec.get("app");
            let lists = [
                ("containers", spec.get("containers")),
                ("containers", spec.get("initContainers")),
                ("volumes", spec.get("volumes")),
                ("volumeMounts", app.and_then(|a| a.get("volumeMounts"))),
                ("env", app.and_then(|a| a.get("env"))),
            ];
            for (group, list) in lists {
                for item in list.map(Order::items).unwrap_or_default() {
                    if let Some(name) = item.name() {
                        items.entry((group, name)).or_insert(item);
                    }
                }
            }
        }
        Added { items }
    }

    fn find(&self, list: &str, name: &str) -> Option<&'a Order> {
        self.items.get(&(group(list)?, name)).copied()
    }
}

/// `value`, serialized with its maps' keys in `order`: the keys the user
/// wrote first, in their order, then the ones Tandem added. An item Tandem
/// added to a list is written in its template's order, `name` first.
pub(super) struct Ordered<'a> {
    pub(super) value: &'a Value,
    pub(super) order: Option<&'a Order>,
    pub(super) added: &'a Added<'a>,
    /// The key this value sits under, when it is a list.
    list: Option<&'a str>,
    name_first: bool,
}

impl<'a> Ordered<'a> {
    pub(super) fn new(value: &'a Value, order: Option<&'a Order>, added: &'a Added<'a>) -> Self {
        Ordered {
            value,
            order,
            added,
            list: None,
            name_first: false,
        }
    }

    fn child(&self, value: &'a Value, order: Option<&'a Order>, list: Option<&'a str>) -> Self {
        Ordered {
            value,
            order,
            added: self.added,
            list,
            name_first: false,
        }
    }
}

impl Serialize for Ordered<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match (self.value, self.order) {
            (Value::Object(map), order) => {
                let keys = match order {
                    Some(Order::Map { keys }) => keys.as_slice(),
                    _ => &[],
                };
                let mut out = s.serialize_map(Some(map.len()))?;
                let name = map
                    .get_key_value("name")
                    .filter(|_| self.name_first)
                    .map(|(k, v)| (k, v, keys.iter().find(|(k, _)| k == "name").map(|(_, o)| o)));
                let written = keys
                    .iter()
                    .filter(|(k, _)| !(self.name_first && k == "name"))
                    .filter_map(|(k, order)| {
                        let (k, value) = map.get_key_value(k)?;
                        Some((k, value, Some(order)))
                    });
                let added = map
                    .iter()
                    .filter(|(k, _)| !keys.iter().any(|(known, _)| known == *k))
                    .filter(|(k, _)| !(self.name_first && *k == "name"))
                    .map(|(k, value)| (k, value, None));
                for (k, value, order) in name.into_iter().chain(written).chain(added) {
                    let list = value.is_array().then_some(k.as_str());
                    out.serialize_entry(k, &self.child(value, order, list))?;
                }
                out.end()
            }
            (Value::Array(items), order) => {
                let originals = order.map(Order::items).unwrap_or_default();
                let mut out = s.serialize_seq(Some(items.len()))?;
                for (i, item) in items.iter().enumerate() {
                    let name = item.get("name").and_then(Value::as_str);
                    let mut child = match name {
                        Some(n) => match originals.iter().find(|o| o.name() == Some(n)) {
                            Some(o) => self.child(item, Some(o), None),
                            // Not the user's: one of the template's, if known.
                            None => {
                                let template = self.list.and_then(|l| self.added.find(l, n));
                                self.child(item, template, None)
                            }
                        },
                        None => self.child(item, originals.get(i), None),
                    };
                    child.name_first =
                        name.is_some() && !originals.iter().any(|o| o.name() == name);
                    out.serialize_element(&child)?;
                }
                out.end()
            }
            (scalar, _) => scalar.serialize(s),
        }
    }
}
