//! The `constellation` binary: parse flags, set up logging, run, and map the outcome to an exit code.

use clap::Parser;

/// Allocations below this come from glibc's heap, not from their own `mmap`. Above glibc's 128 KiB
/// default, so the data path's buffers (the 128 KiB read-ahead of a connection, a 1 MiB page of a
/// relay answer) reuse freed heap instead of a fresh mapping whose pages fault in one by one
/// (4 KiB each, zeroed by the kernel) and are unmapped again on free.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD_BYTES: libc::c_int = 1024 * 1024;
/// Free bytes an arena keeps at its top before it gives them back to the kernel. glibc's default
/// (128 KiB, then twice the last freed mapping) gave back the space of a 64 KiB yamux frame almost
/// every time it was freed, so the next frame faulted its pages in again: 5–8 % of a tunnel's CPU,
/// measured with `perf` (`clear_page`, `exc_page_fault`). 4 MiB per arena (glibc has at most
/// 8 per core) is what a busy node reuses; an idle one holds no more than that.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD_BYTES: libc::c_int = 4 * 1024 * 1024;

/// Sets the two glibc heap thresholds above, before any thread starts. glibc's own environment
/// variables (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`) win when they are set, so an
/// operator (or a benchmark) can still choose.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for (param, var, value) in [
        (
            libc::M_MMAP_THRESHOLD,
            "MALLOC_MMAP_THRESHOLD_",
            MMAP_THRESHOLD_BYTES,
        ),
        (
            libc::M_TRIM_THRESHOLD,
            "MALLOC_TRIM_THRESHOLD_",
            TRIM_THRESHOLD_BYTES,
        ),
    ] {
        if std::env::var_os(var).is_none() {
            // SAFETY: mallopt only sets a parameter of glibc's allocator; no thread runs yet.
            unsafe {
                libc::mallopt(param, value);
            }
        }
    }
}

fn main() -> std::process::ExitCode {
    tune_allocator();
    let cli = constellation::cli::Cli::parse();
    constellation::logging::init(cli.verbosity());
    match constellation::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!(
                "constellation: {}",
                constellation::logging::error_line(&err)
            );
            std::process::ExitCode::FAILURE
        }
    }
}
