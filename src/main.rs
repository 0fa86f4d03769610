use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() {
    let cli = strata::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = strata::cli::run(cli).await {
        // Library errors carry their own context; print them once, whole.
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}
