//! Why an event that reached a sync or an import was not stored: the store's own rule, the
//! sync's filters, or the local relay's refusal. Its text is the key the counters have always used.

use crate::store::rules::Rejection;

/// Why an event was not stored. `Display` is the counter key of the history, the report and the
/// JSON output (`invalid signature`, `spam`, `no-dms`, …), unchanged from when it was a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The store's rules (size, tags, id, signature, deletion), judged here or by the store.
    Rule(Rejection),
    /// The content holds the spam phrase (`Hello NOSTR visitor.`).
    Spam,
    /// A direct message (kind 4) while `--no-dms` is set.
    NoDms,
    /// A JSON line of an import that is not an event.
    Malformed,
    /// A JSON line of an import longer than the store accepts (counted with the too-large events).
    LineTooLong,
    /// Piped to the import command, yet not in the local relay afterwards.
    ByImportCommand,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Rule(rejection) => rejection.key(),
            Refusal::Spam => "spam",
            Refusal::NoDms => "no-dms",
            Refusal::Malformed => "malformed",
            Refusal::LineTooLong => Rejection::TooLarge { size: 0, max: 0 }.key(),
            Refusal::ByImportCommand => "refused by the import command",
        })
    }
}

impl Refusal {
    /// Remembered, so that the event is never fetched again: the event itself is at fault (a
    /// bad signature, spam, a rule of the store). An import command's (or its write policy's)
    /// refusal may be passing (a rate limit, a full disk): the next run tries again.
    pub fn lasting(&self) -> bool {
        !matches!(self, Refusal::ByImportCommand)
    }
}

impl From<Rejection> for Refusal {
    fn from(rejection: Rejection) -> Self {
        Refusal::Rule(rejection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_keep_the_counter_keys_of_the_history() {
        let keys: Vec<String> = [
            Refusal::Rule(Rejection::InvalidSignature),
            Refusal::Rule(Rejection::Deleted),
            Refusal::Spam,
            Refusal::NoDms,
            Refusal::Malformed,
            Refusal::LineTooLong,
            Refusal::ByImportCommand,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            keys,
            [
                "invalid signature",
                "deleted",
                "spam",
                "no-dms",
                "malformed",
                "too large",
                "refused by the import command"
            ]
        );
    }
}
