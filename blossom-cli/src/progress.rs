//! A ticking elapsed-seconds indicator on stderr while a slow request runs.
//!
//! Image models can take a minute; silence that long looks like a hang. On a terminal the
//! indicator rewrites one line and erases it when done; otherwise (a pipe, a log file) it writes
//! one line per tick. Nothing is printed for waits under a second.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// Time between ticks.
const TICK: Duration = Duration::from_secs(1);

/// Runs `work`, printing `<what>... Ns` on stderr every second until it finishes.
pub(crate) async fn with_progress<F: Future>(what: &str, work: F) -> F::Output {
    let terminal = std::io::stderr().is_terminal();
    let started = tokio::time::Instant::now();
    let mut ticks = tokio::time::interval_at(started + TICK, TICK);
    let mut shown = false;
    tokio::pin!(work);
    loop {
        tokio::select! {
            biased;
            output = &mut work => {
                if shown && terminal {
                    // Erase the indicator so the next line starts clean.
                    let _ = write!(std::io::stderr(), "\r\x1b[2K");
                    let _ = std::io::stderr().flush();
                }
                return output;
            }
            _ = ticks.tick() => {
                let secs = started.elapsed().as_secs();
                if terminal {
                    let _ = write!(std::io::stderr(), "\r{what}... {secs}s");
                    let _ = std::io::stderr().flush();
                } else {
                    note!("{what}... {secs}s");
                }
                shown = true;
            }
        }
    }
}
