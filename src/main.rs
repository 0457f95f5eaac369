use clap::Parser;
use tandem::cli::{Cli, run};

// glibc's malloc was a third of the CPU of an admission (a parsed pod is
// thousands of small allocations freed together); see bench/README.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    std::process::exit(run(cli.command));
}
