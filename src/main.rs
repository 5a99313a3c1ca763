use clap::Parser;

fn main() {
    // The clock of time to dead starts here (`cordon::cli::started`).
    cordon::cli::started();
    let cli = cordon::cli::Cli::parse();
    cordon::cli::init_tracing(cli.verbose);
    std::process::exit(cordon::cli::run(cli));
}
