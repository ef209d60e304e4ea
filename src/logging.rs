//! Logging: one `tracing` subscriber to stderr for every subcommand, and the one-line form of
//! an error chain. `RUST_LOG` wins over the `-v` count so that operators can target one module.

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

/// The one line printed for a failed command: each cause of the chain once. Many errors already
/// say their source in their own message (`cannot read X: No such file…`), so a cause that the
/// message before it already ends with is not repeated.
pub fn error_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_os_error_is_said_once() {
        let read = crate::config::ConfigError::Read {
            path: "/nonexistent/config".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        let err = anyhow::Error::from(read).context("while starting");
        assert_eq!(
            super::error_line(&err),
            "while starting: cannot read /nonexistent/config: entity not found"
        );
    }
}
