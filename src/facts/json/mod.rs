//! JSON as Tandem reads it: [`Doc`], a JSON value whose strings borrow from
//! the text it was read from; [`Fields`], which parts of a pod a reader
//! needs; and [`parse`], the strict reader that builds only those parts of
//! a review body and checks the rest without building it.
//!
//! - `doc.rs`: the value, its accessors and its exact JSON writer;
//! - `fields.rs`: the field sets readers declare;
//! - `read.rs`: the reader;
//! - `order.rs`: the field order of a document as written, read beside it.

mod doc;
mod fields;
mod order;
mod read;

pub use doc::{Doc, write_json_string};
pub use fields::Fields;
pub use order::Order;
pub use read::{JsonError, Keep, parse};
