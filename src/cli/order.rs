//! The field order of the manifests a user gave, so `inject` writes them
//! back in that order and a rendered manifest diffs against its source only
//! where Tandem added something.
//!
//! The documents themselves are `serde_json::Value`s, whose maps are sorted:
//! keeping insertion order there would put a hash in every map the webhook
//! parses, and cost the admission path about a seventh of its instructions on
//! small pods. So the order is read separately, from the same text, and
//! applied on output.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

/// The shape of a document as written: map keys in order, list items, and
/// the `name` of each map (lists of containers, volumes, env are matched by
/// name, so an item Tandem inserted in front does not shift the rest).
#[derive(Debug, Default)]
pub enum Order {
    Map {
        keys: Vec<(String, Order)>,
    },
    List(Vec<Order>),
    Text(String),
    #[default]
    Other,
}

impl Order {
    fn name(&self) -> Option<&str> {
        match self {
            Order::Map { keys } => keys.iter().find_map(|(k, v)| match (k.as_str(), v) {
                ("name", Order::Text(n)) => Some(n.as_str()),
                _ => None,
            }),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Order {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Order, D::Error> {
        d.deserialize_any(OrderVisitor)
    }
}

struct OrderVisitor;

impl<'de> Visitor<'de> for OrderVisitor {
    type Value = Order;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML or JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Order, E> {
        Ok(Order::Other)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Order, E> {
        Ok(Order::Other)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Order, E> {
        Ok(Order::Other)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Order, E> {
        Ok(Order::Other)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Order, E> {
        Ok(Order::Text(v.to_string()))
    }
    fn visit_unit<E>(self) -> Result<Order, E> {
        Ok(Order::Other)
    }
    fn visit_none<E>(self) -> Result<Order, E> {
        Ok(Order::Other)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Order, D::Error> {
        Order::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Order, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Order::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Order, A::Error> {
        let mut keys = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Order>()? {
            keys.push((k, v));
        }
        Ok(Order::Map { keys })
    }
}

/// `value`, serialized with its maps' keys in `order`: the keys the user
/// wrote first, in their order, then the ones Tandem added.
pub(super) struct Ordered<'a> {
    pub(super) value: &'a Value,
    pub(super) order: Option<&'a Order>,
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
                let written = keys.iter().filter_map(|(k, order)| {
                    let value = map.get(k)?;
                    Some((k, value, Some(order)))
                });
                let added = map
                    .iter()
                    .filter(|(k, _)| !keys.iter().any(|(known, _)| known == *k))
                    .map(|(k, value)| (k, value, None));
                for (k, value, order) in written.chain(added) {
                    out.serialize_entry(k, &Ordered { value, order })?;
                }
                out.end()
            }
            (Value::Array(items), order) => {
                let originals = match order {
                    Some(Order::List(o)) => o.as_slice(),
                    _ => &[],
                };
                let mut out = s.serialize_seq(Some(items.len()))?;
                for (i, item) in items.iter().enumerate() {
                    let name = item.get("name").and_then(Value::as_str);
                    let order = match name {
                        Some(n) => originals.iter().find(|o| o.name() == Some(n)),
                        None => originals.get(i),
                    };
                    out.serialize_element(&Ordered { value: item, order })?;
                }
                out.end()
            }
            (scalar, _) => scalar.serialize(s),
        }
    }
}
