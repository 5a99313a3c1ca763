use clap::Parser;

fn main() {
    let cli = cordon::cli::Cli::parse();
    cordon::cli::init_tracing(cli.verbose);
    std::process::exit(cordon::cli::run(cli));
}
