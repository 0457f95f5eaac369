//! `floor-server`: the strict floor under any JSON admission webhook: TLS,
//! HTTP/1.1 and a JSON validation pass that builds nothing but the uid, with
//! Tandem's allocator (mimalloc). What Tandem spends above it is the price of
//! deciding and patching.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../server.rs"]
mod server;

fn main() -> anyhow::Result<()> {
    server::main(server::Parse::Validate)
}
