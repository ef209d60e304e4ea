//! The insert rules as pure functions: size limits, what a kind means for storage (regular,
//! replaceable, addressable, ephemeral), and the NIP-09 targets of a deletion. No SQL here.

use nostr::prelude::{Event, EventId, PublicKey};
use serde::{Deserialize, Serialize};

use crate::config::relay::{DEFAULT_MAX_EVENT_BYTES, DEFAULT_MAX_FUTURE_SECS, DEFAULT_MAX_TAGS};

/// Limits checked before an event reaches the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventLimits {
    /// Largest serialized event, in bytes.
    pub max_event_bytes: usize,
    /// Most tags in one event.
    pub max_tags: usize,
    /// Refuse events whose `created_at` is more than this many seconds ahead of our clock.
    pub max_future_secs: u64,
}

impl Default for EventLimits {
    fn default() -> Self {
        EventLimits {
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            max_tags: DEFAULT_MAX_TAGS,
            max_future_secs: DEFAULT_MAX_FUTURE_SECS,
        }
    }
}

/// Why an event was refused. `reason()` is the NIP-01 `OK false` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    InvalidId,
    InvalidSignature,
    TooLarge {
        size: usize,
        max: usize,
    },
    TooManyTags {
        count: usize,
        max: usize,
    },
    /// `created_at` is more than `max` seconds ahead of the relay's clock.
    TooNew {
        max: u64,
    },
    /// Kinds 20000–29999 are relayed live, never stored.
    Ephemeral,
    /// A NIP-09 deletion of the same author covers it.
    Deleted,
}

impl Rejection {
    /// Short key for counters (`rejected` maps, stats tables).
    pub fn key(&self) -> &'static str {
        match self {
            Rejection::InvalidId => "invalid id",
            Rejection::InvalidSignature => "invalid signature",
            Rejection::TooLarge { .. } => "too large",
            Rejection::TooManyTags { .. } => "too many tags",
            Rejection::TooNew { .. } => "too new",
            Rejection::Ephemeral => "ephemeral",
            Rejection::Deleted => "deleted",
        }
    }

    /// The message of an `OK false`, with its NIP-01 machine-readable prefix.
    pub fn reason(&self) -> String {
        match self {
            Rejection::InvalidId => "invalid: event id does not match".into(),
            Rejection::InvalidSignature => "invalid: bad signature".into(),
            Rejection::TooLarge { size, max } => {
                format!("invalid: event too large ({size} bytes, max {max})")
            }
            Rejection::TooManyTags { count, max } => {
                format!("invalid: too many tags ({count}, max {max})")
            }
            Rejection::TooNew { max } => {
                format!("invalid: created_at is more than {max} s in the future")
            }
            Rejection::Ephemeral => "invalid: ephemeral events are not stored".into(),
            Rejection::Deleted => "blocked: this event was deleted by its author".into(),
        }
    }
}

/// What the store did with one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored; `replaced` older versions of the same replaceable/addressable slot were removed.
    Inserted {
        replaced: u32,
    },
    /// Already stored.
    Duplicate,
    /// An older version of a replaceable/addressable event than the one stored.
    Superseded,
    Rejected(Rejection),
}

impl Outcome {
    /// `(accepted, message)` of the NIP-01 `OK` answer.
    pub fn ok_message(&self) -> (bool, String) {
        match self {
            Outcome::Inserted { .. } => (true, String::new()),
            Outcome::Duplicate => (true, "duplicate: already have this event".into()),
            Outcome::Superseded => (true, "duplicate: have a newer version".into()),
            Outcome::Rejected(r) => (false, r.reason()),
        }
    }
}

/// How the store keeps events of a kind (NIP-01).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KindClass {
    Regular,
    /// 0, 3, 41, 10000–19999: one per (pubkey, kind).
    Replaceable,
    /// 30000–39999: one per (pubkey, kind, `d`).
    Addressable,
    /// 20000–29999: never stored.
    Ephemeral,
}

pub fn classify(kind: u16) -> KindClass {
    match kind {
        0 | 3 | 41 | 10_000..=19_999 => KindClass::Replaceable,
        20_000..=29_999 => KindClass::Ephemeral,
        30_000..=39_999 => KindClass::Addressable,
        _ => KindClass::Regular,
    }
}

/// The `d` slot of an event: the first `d` value for addressable kinds ("" if none), "" for
/// replaceable ones, `None` for the rest.
pub fn slot(event: &Event) -> Option<String> {
    match classify(event.kind.as_u16()) {
        KindClass::Addressable => Some(first_value(event, "d").unwrap_or_default().to_owned()),
        KindClass::Replaceable => Some(String::new()),
        KindClass::Regular | KindClass::Ephemeral => None,
    }
}

fn first_value<'a>(event: &'a Event, name: &str) -> Option<&'a str> {
    event
        .tags
        .iter()
        .map(|t| t.as_slice())
        .find(|t| t.len() >= 2 && t[0] == name)
        .map(|t| t[1].as_str())
}

/// Checks that need no database: limits, id, signature. `serialized` is the event's JSON length.
pub fn check(event: &Event, serialized: usize, limits: &EventLimits) -> Result<(), Rejection> {
    check_limits(event, serialized, limits)?;
    check_signature(event)
}

/// The size, tag and future-timestamp limits alone (a sync screens with them when its local
/// side verifies ids and signatures itself).
pub fn check_limits(
    event: &Event,
    serialized: usize,
    limits: &EventLimits,
) -> Result<(), Rejection> {
    if serialized > limits.max_event_bytes {
        return Err(Rejection::TooLarge {
            size: serialized,
            max: limits.max_event_bytes,
        });
    }
    if event.tags.len() > limits.max_tags {
        return Err(Rejection::TooManyTags {
            count: event.tags.len(),
            max: limits.max_tags,
        });
    }
    let now = nostr::prelude::Timestamp::now().as_secs();
    if event.created_at.as_secs() > now.saturating_add(limits.max_future_secs) {
        return Err(Rejection::TooNew {
            max: limits.max_future_secs,
        });
    }
    Ok(())
}

/// The id and the signature.
pub fn check_signature(event: &Event) -> Result<(), Rejection> {
    if !event.verify_id() {
        return Err(Rejection::InvalidId);
    }
    if !event.verify_signature() {
        return Err(Rejection::InvalidSignature);
    }
    Ok(())
}

/// A coordinate named by an `a` tag: `<kind>:<pubkey hex>:<d>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coordinate {
    pub kind: u16,
    pub pubkey: PublicKey,
    pub d: String,
}

impl Coordinate {
    pub fn parse(s: &str) -> Option<Coordinate> {
        let mut parts = s.splitn(3, ':');
        let kind = parts.next()?.parse().ok()?;
        let pubkey = PublicKey::from_hex(parts.next()?).ok()?;
        let d = parts.next().unwrap_or("").to_owned();
        Some(Coordinate { kind, pubkey, d })
    }
}

/// What a kind-5 event asks to delete: only its own author's events count (NIP-09).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Deletion {
    pub ids: Vec<EventId>,
    pub coordinates: Vec<Coordinate>,
}

pub fn deletion_targets(event: &Event) -> Deletion {
    let mut out = Deletion::default();
    for tag in event.tags.iter().map(|t| t.as_slice()) {
        match tag {
            [name, value, ..] if name == "e" => {
                if let Ok(id) = EventId::from_hex(value) {
                    out.ids.push(id);
                }
            }
            [name, value, ..] if name == "a" => {
                if let Some(c) = Coordinate::parse(value)
                    && c.pubkey == event.pubkey
                {
                    out.coordinates.push(c);
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::prelude::*;

    fn event(kind: u16, tags: Vec<Tag>, keys: &Keys) -> Event {
        EventBuilder::new(Kind::from(kind), "x")
            .tags(tags)
            .finalize(keys)
            .expect("sign")
    }

    #[test]
    fn kinds_are_classified_as_nip01_says() {
        assert_eq!(classify(0), KindClass::Replaceable);
        assert_eq!(classify(1), KindClass::Regular);
        assert_eq!(classify(3), KindClass::Replaceable);
        assert_eq!(classify(41), KindClass::Replaceable);
        assert_eq!(classify(9_999), KindClass::Regular);
        assert_eq!(classify(10_002), KindClass::Replaceable);
        assert_eq!(classify(22_242), KindClass::Ephemeral);
        assert_eq!(classify(30_023), KindClass::Addressable);
        assert_eq!(classify(40_000), KindClass::Regular);
    }

    #[test]
    fn limits_id_and_signature_are_checked() {
        let keys = Keys::generate();
        let ok = event(1, vec![], &keys);
        assert_eq!(check(&ok, 100, &EventLimits::default()), Ok(()));
        assert!(matches!(
            check(&ok, 70_000, &EventLimits::default()),
            Err(Rejection::TooLarge { size: 70_000, .. })
        ));
        let many = event(
            1,
            (0..5).map(|i| Tag::hashtag(format!("t{i}"))).collect(),
            &keys,
        );
        let tight = EventLimits {
            max_tags: 4,
            ..EventLimits::default()
        };
        assert!(matches!(
            check(&many, 100, &tight),
            Err(Rejection::TooManyTags { count: 5, max: 4 })
        ));
        let mut forged = ok.clone();
        forged.content = "changed".into();
        assert_eq!(
            check(&forged, 100, &EventLimits::default()),
            Err(Rejection::InvalidId)
        );
        let other = event(1, vec![], &Keys::generate());
        let mut wrong_sig = ok.clone();
        wrong_sig.sig = other.sig;
        assert_eq!(
            check(&wrong_sig, 100, &EventLimits::default()),
            Err(Rejection::InvalidSignature)
        );
    }

    #[test]
    fn slots_follow_the_d_tag() {
        let keys = Keys::generate();
        assert_eq!(slot(&event(1, vec![], &keys)), None);
        assert_eq!(slot(&event(0, vec![], &keys)), Some(String::new()));
        assert_eq!(slot(&event(30_023, vec![], &keys)), Some(String::new()));
        let d = event(30_023, vec![Tag::identifier("post")], &keys);
        assert_eq!(slot(&d), Some("post".into()));
    }

    #[test]
    fn deletions_name_ids_and_only_own_coordinates() {
        let keys = Keys::generate();
        let target = event(1, vec![], &keys);
        let stranger = Keys::generate();
        let own = format!("30023:{}:post", keys.public_key().to_hex());
        let foreign = format!("30023:{}:post", stranger.public_key().to_hex());
        let del = event(
            5,
            vec![
                Tag::event(target.id),
                Tag::parse(["a", own.as_str()]).expect("tag"),
                Tag::parse(["a", foreign.as_str()]).expect("tag"),
                Tag::parse(["e", "not-hex"]).expect("tag"),
                Tag::parse(["a", "garbage"]).expect("tag"),
            ],
            &keys,
        );
        let d = deletion_targets(&del);
        assert_eq!(d.ids, vec![target.id]);
        assert_eq!(d.coordinates.len(), 1);
        assert_eq!(d.coordinates[0].d, "post");
        assert_eq!(d.coordinates[0].kind, 30_023);
    }
}
