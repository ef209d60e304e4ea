//! `relay import` and `relay export`: the event store as JSON lines, the format of `strfry import`
//! and `strfry export`, so a station moves between strfry and the embedded relay with a pipe.

use std::io::{BufRead, Read as _};

use nostr::prelude::{Event, EventId};
use serde::Serialize;

use crate::store::{Store, StoreError};
use crate::sync::local::ImportCounts;
use crate::sync::refusal::Refusal;

/// Events per commit.
pub const IMPORT_BATCH: usize = 1_000;
/// Bad lines named one by one in the log; the rest are only counted.
const NAMED_BAD_LINES: u64 = 10;
/// Room for the line ending and whitespace around an event of the largest accepted size.
const LINE_SLACK: usize = 1_024;

/// What an import did, with the totals of the `strfry import` summary line.
#[derive(Debug, Default, Serialize)]
pub struct ImportSummary {
    pub lines: u64,
    #[serde(flatten)]
    pub counts: ImportCounts,
}

impl ImportSummary {
    /// `Done. Processed N lines. A added, R rejected, D dups` (strfry's wording, so a script that
    /// reads one reads the other).
    pub fn done_line(&self) -> String {
        format!(
            "Done. Processed {} lines. {} added, {} rejected, {} dups",
            self.lines,
            self.counts.imported,
            self.counts.rejected_total(),
            self.counts.duplicate
        )
    }
}

/// Read JSON lines from `input` into `store`, one commit per [`IMPORT_BATCH`] events. A line that
/// is not an event, or longer than the store accepts, is counted as rejected and skipped; the
/// import goes on. Counts come from the store's outcomes, after commit.
pub async fn import(
    store: &Store,
    input: impl BufRead,
    progress: Option<indicatif::ProgressBar>,
) -> Result<ImportSummary, StoreError> {
    let max_line = store.limits().max_event_bytes + LINE_SLACK;
    let mut lines = BoundedLines::new(input, max_line);
    let mut summary = ImportSummary::default();
    let mut batch = Vec::with_capacity(IMPORT_BATCH);
    loop {
        let line = lines
            .next_line()
            .map_err(|e| StoreError::Write(format!("reading the input: {e}")))?;
        let Some(line) = line else { break };
        if matches!(&line, Line::Text(text) if text.trim().is_empty()) {
            continue;
        }
        summary.lines += 1;
        let reason = match line {
            Line::TooLong => Some(Refusal::LineTooLong),
            Line::Text(text) => match Event::from_json(text.trim()) {
                Ok(event) => {
                    batch.push(event);
                    None
                }
                Err(_) => Some(Refusal::Malformed),
            },
        };
        if let Some(reason) = reason {
            summary.counts.reject(&reason);
            if summary.counts.rejected_total() <= NAMED_BAD_LINES {
                tracing::warn!(line = summary.lines, "skipped: {reason}");
            }
        }
        if batch.len() >= IMPORT_BATCH {
            commit(store, &mut batch, &mut summary).await?;
            if let Some(bar) = &progress {
                bar.set_message(format!(
                    "{} lines, {} added",
                    summary.lines, summary.counts.imported
                ));
                bar.tick();
            }
        }
    }
    commit(store, &mut batch, &mut summary).await?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    Ok(summary)
}

async fn commit(
    store: &Store,
    batch: &mut Vec<Event>,
    summary: &mut ImportSummary,
) -> Result<(), StoreError> {
    if batch.is_empty() {
        return Ok(());
    }
    let events = std::mem::take(batch);
    let ids: Vec<EventId> = events.iter().map(|e| e.id).collect();
    let outcomes = store.insert(events).await?;
    summary.counts.tally(ids, outcomes);
    summary.counts.accepted.clear();
    summary.counts.rejected_ids.clear();
    tracing::debug!(
        lines = summary.lines,
        added = summary.counts.imported,
        "committed"
    );
    Ok(())
}

enum Line {
    Text(String),
    TooLong,
}

/// Lines of at most `max` bytes; a longer one is skipped to its end without being held.
struct BoundedLines<R> {
    input: R,
    max: usize,
}

impl<R: BufRead> BoundedLines<R> {
    fn new(input: R, max: usize) -> Self {
        BoundedLines { input, max }
    }

    fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        let mut buf = Vec::new();
        let read = (&mut self.input)
            .take(self.max as u64 + 1)
            .read_until(b'\n', &mut buf)?;
        if read == 0 {
            return Ok(None);
        }
        if buf.last() != Some(&b'\n') && buf.len() > self.max {
            // Drain the rest of the long line.
            loop {
                let chunk = self.input.fill_buf()?;
                if chunk.is_empty() {
                    break;
                }
                match chunk.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        self.input.consume(i + 1);
                        break;
                    }
                    None => {
                        let n = chunk.len();
                        self.input.consume(n);
                    }
                }
            }
            return Ok(Some(Line::TooLong));
        }
        // Invalid UTF-8 becomes replacement characters, which no valid event id matches.
        Ok(Some(Line::Text(String::from_utf8_lossy(&buf).into_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &str, max: usize) -> Vec<String> {
        let mut reader = BoundedLines::new(input.as_bytes(), max);
        let mut out = Vec::new();
        while let Some(line) = reader.next_line().unwrap() {
            out.push(match line {
                Line::Text(t) => t.trim_end().to_owned(),
                Line::TooLong => "<too long>".to_owned(),
            });
        }
        out
    }

    #[test]
    fn long_lines_are_skipped_whole_and_the_next_one_is_read() {
        let long = "x".repeat(50);
        let input = format!("short\n{long}\nnext\nend");
        assert_eq!(lines(&input, 10), ["short", "<too long>", "next", "end"]);
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_kept() {
        assert_eq!(lines("0123456789\nab\n", 10), ["0123456789", "ab"]);
    }
}
