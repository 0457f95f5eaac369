//! `reference-server`: the reference Tandem is measured against: TLS, HTTP/1.1
//! and a full JSON parse (`serde_json::Value`), then a fixed answer. The
//! system allocator, unless built with the `mimalloc` feature (Tandem's).

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../server.rs"]
mod server;

fn main() -> anyhow::Result<()> {
    server::main(server::Parse::Full)
}
