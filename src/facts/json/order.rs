//! The field order of a document as written. `serde_json::Value` maps are
//! sorted: keeping insertion order there would put a hash in every map the
//! webhook parses, and cost the admission path about a seventh of its
//! instructions on small pods. So the order is read separately, from the same
//! text, by the CLI (the manifests it rewrites) and the template loader (the
//! objects a template adds), and applied on output.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// The shape of a document as written: map keys in order, list items, and
/// the `name` of each map (lists of containers, volumes, env are matched by
/// name, so an item Tandem inserted in front does not shift the rest).
#[derive(Clone, Debug, Default)]
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
    /// The `name` this map was written with, if any.
    pub fn name(&self) -> Option<&str> {
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

impl Order {
    /// The order of `key` in this map, if it was written.
    pub fn get(&self, key: &str) -> Option<&Order> {
        match self {
            Order::Map { keys } => keys.iter().find(|(k, _)| k == key).map(|(_, o)| o),
            _ => None,
        }
    }

    /// The items of this list, if it is one.
    pub fn items(&self) -> &[Order] {
        match self {
            Order::List(items) => items,
            _ => &[],
        }
    }
}
