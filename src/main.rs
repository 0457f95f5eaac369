use clap::Parser;
use tandem::cli::{Cli, run};

fn main() {
    let cli = Cli::parse();
    std::process::exit(run(cli.command));
}
