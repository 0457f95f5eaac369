//! docs/operations.md lists every value of `tandem_skips_total{reason}`,
//! and only those: the engine's `SkipReason`, in its order.

use tandem::engine::SkipReason;

#[test]
fn operations_md_lists_every_skip_reason() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .unwrap();
    let start = doc
        .find("`tandem_skips_total{reason}` takes exactly these values")
        .expect("the skip reason table");
    let listed: Vec<&str> = doc[start..]
        .lines()
        .skip_while(|l| !l.starts_with("| reason |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.split('`').nth(1).unwrap_or_default())
        .collect();
    let reasons: Vec<&str> = SkipReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(listed, reasons);
}
