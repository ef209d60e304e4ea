//! Logging: one `tracing` subscriber to stderr for every subcommand.
//! `RUST_LOG` wins over the `-v` count so that operators can target one module.

use tracing_subscriber::EnvFilter;

/// Install the stderr subscriber. `verbosity` is the number of `-v` flags.
pub fn init(verbosity: u8) {
    let default = match verbosity {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
