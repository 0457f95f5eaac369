//! Which fields of a JSON document a reader looks at. The webhook builds only
//! those while parsing a review and skips the rest unbuilt: a pod's image,
//! probes, tolerations and the review's user info cost allocations on every
//! admission and decide nothing.

/// The fields kept below one JSON value. Arrays are transparent: the fields
/// of an array are those of each of its elements. A value that is not an
/// object (a string where an object belongs) is kept whole, so a reader still
/// sees, and reports, the wrong shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fields {
    /// The whole value.
    All,
    /// Only these keys of an object, each with the fields kept below it.
    Only(&'static [(&'static str, Fields)]),
}

impl Fields {
    /// The fields kept below `key`, `None` when `key` is not read at all.
    pub fn child(&self, key: &str) -> Option<Fields> {
        match self {
            Fields::All => Some(Fields::All),
            Fields::Only(keys) => keys.iter().find(|(k, _)| *k == key).map(|(_, f)| *f),
        }
    }
}
