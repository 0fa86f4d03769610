use clap::Parser;
use strata::format::LogFormat;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() {
    // Behave like a Unix tool when piped into `head`: end quietly on a
    // closed pipe instead of panicking on the next print.
    // SAFETY: called first thing, before any other thread exists.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        );
    }
    let cli = strata::cli::Cli::parse();
    // A server's request log is its point; a command's log is noise.
    let default_filter = match cli.command {
        strata::cli::Command::Serve(_) => "info",
        _ => "warn",
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        // Escape codes belong on a terminal only: in a file, journald or a
        // pipe they are noise that breaks grep.
        LogFormat::Text => logs.with_ansi(strata::format::colour_on_stderr()).init(),
        LogFormat::Json => logs.json().with_ansi(false).init(),
    }
    if let Err(e) = strata::cli::run(cli).await {
        // Library errors carry their own context; print them once, whole.
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}
