//! Issue 21: strfry, the relay stations run, as a real peer. The sync against a strfry peer
//! (NIP-77 and REQ), `strfry sync` against our relay both ways, `--import-command` with the real
//! `strfry import`, export/import round trips, and the same REQs answered with the same events.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use nostr::prelude::*;

use crate::common::relays::{OurRelay, ids, note, now, publish, query_ordered, runtime};
use crate::common::strfry::{Strfry, stderr};
use crate::common::{self};

/// Run `constellation backfill --json` on a fresh home; returns (exit code, stats).
fn backfill(dir: &Path, args: &[&str]) -> (i32, serde_json::Value) {
    let home = dir.join("home");
    let zen = dir.join("zen");
    let mut all = vec![
        "backfill",
        "--json",
        "--no-profiles",
        "--no-fallback",
        "--days",
        "0",
    ];
    all.extend(["--zen", zen.to_str().expect("utf-8")]);
    all.extend_from_slice(args);
    let out = common::cli(&home, &all);
    let stats = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("backfill printed no JSON ({e}); stderr: {}", stderr(&out)));
    (out.status.code().unwrap_or(-1), stats)
}

/// `n` notes of a new author, one a second, the newest `age` seconds old.
fn notes(label: &str, n: u64, age: u64) -> Vec<Event> {
    let keys = Keys::generate();
    (0..n)
        .map(|i| note(&keys, &format!("{label} {i}"), now() - age - i))
        .collect()
}

fn id_set(events: &[Event]) -> BTreeSet<EventId> {
    events.iter().map(|e| e.id).collect()
}

fn every_note() -> Filter {
    Filter::new().kind(Kind::TextNote)
}

#[test]
fn the_sync_reconciles_with_a_strfry_peer_over_nip77_and_over_req() {
    // NIP-77 both ways; REQ paging downloads only (`protocols/sync.md`: no set difference, so
    // nothing to upload), so strfry then holds only its own.
    for (mode, flags, uploaded) in [("nip77", &[][..], 30), ("req", &["--req-only"][..], 0)] {
        let local = OurRelay::start("");
        let peer = Strfry::start();
        let ours = notes("ours", 30, 100);
        let theirs = notes("theirs", 30, 200);
        publish(&local.url, &ours);
        publish(&local.url, &theirs[..5]);
        publish(&peer.url, &theirs);
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut args = vec!["--local-relay", local.url.as_str(), "--peer", &peer.url];
        args.extend_from_slice(flags);
        let (code, stats) = backfill(tmp.path(), &args);
        assert_eq!(code, 0, "{mode}: {stats}\nstrfry log:\n{}", peer.log());
        assert_eq!(stats["peers"][0]["mode"], mode, "{stats}");
        assert_eq!(stats["imported"], 25, "{mode}: {stats}");
        assert_eq!(stats["uploaded"], uploaded, "{mode}: {stats}");
        let union: BTreeSet<EventId> = id_set(&ours).union(&id_set(&theirs)).copied().collect();
        assert_eq!(local.stored_ids(), union, "{mode}: our relay");
        let held = if uploaded > 0 { union } else { id_set(&theirs) };
        assert_eq!(peer.stored_ids(), held, "{mode}: strfry");
        // The next hour moves nothing.
        let (code, stats) = backfill(tmp.path(), &args);
        assert_eq!(code, 0, "{stats}");
        assert_eq!(
            (stats["imported"].as_u64(), stats["uploaded"].as_u64()),
            (Some(0), Some(0))
        );
    }
}

#[test]
fn strfry_sync_reconciles_with_our_relay_down_then_up() {
    let ours = OurRelay::start("");
    let station = Strfry::start();
    let a = notes("on ours", 40, 100);
    let b = notes("on strfry", 20, 300);
    publish(&ours.url, &a);
    publish(&station.url, &b);
    // Down: strfry's NIP-77 client pulls what it lacks from our relay, ours is unchanged.
    let out = station.run(&["sync", &ours.url, "--dir", "down"], b"");
    assert!(out.status.success(), "strfry sync down: {}", stderr(&out));
    let both: BTreeSet<EventId> = id_set(&a).union(&id_set(&b)).copied().collect();
    assert_eq!(station.stored_ids(), both);
    assert_eq!(ours.stored_ids(), id_set(&a));
    // Up: it pushes what our relay lacks.
    let out = station.run(&["sync", &ours.url, "--dir", "up"], b"");
    assert!(out.status.success(), "strfry sync up: {}", stderr(&out));
    assert_eq!(ours.stored_ids(), both);
    assert_eq!(
        ids(&ours.url, every_note()),
        both,
        "served, not only stored"
    );
}

#[test]
fn the_import_command_is_the_real_strfry_import() {
    // The station runs strfry; the backfill stores through `strfry import`, as Astroport does.
    let station = Strfry::start();
    let peer = OurRelay::start("");
    let remote = notes("remote", 40, 500);
    let own = notes("own", 10, 100);
    publish(&peer.url, &remote);
    publish(&station.url, &remote[..5]);
    publish(&station.url, &own);
    let tmp = tempfile::tempdir().expect("tempdir");
    let import = station.import_command();
    let args = [
        "--local-relay",
        station.url.as_str(),
        "--import-command",
        import.as_str(),
        "--peer",
        peer.url.as_str(),
    ];
    let (code, stats) = backfill(tmp.path(), &args);
    assert_eq!(code, 0, "{stats}\n{}", station.log());
    assert_eq!(stats["imported"], 35, "{stats}");
    assert_eq!(stats["uploaded"], 10, "{stats}");
    let union: BTreeSet<EventId> = id_set(&remote).union(&id_set(&own)).copied().collect();
    assert_eq!(station.stored_ids(), union);
    assert_eq!(peer.stored_ids(), union);
}

/// `constellation relay --db DB <args>` with `stdin`.
fn our_relay_cli(db: &Path, args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut command = Command::new(common::bin());
    command.arg("relay").arg("--db").arg(db).args(args);
    common::run_with_stdin(&mut command, stdin)
}

/// The lines a command printed.
fn lines_of(out: std::process::Output) -> Vec<String> {
    let text = String::from_utf8(out.stdout).expect("utf-8");
    text.lines().map(str::to_owned).collect()
}

/// A varied corpus: notes with tags and unicode, reactions, a profile, a contact list.
fn corpus() -> Vec<Event> {
    let (alice, bob) = (Keys::generate(), Keys::generate());
    let t = now() - 1000;
    let first = note(&alice, "héllo \"quoted\" \\ back\nslash ✨", t);
    let mut out = vec![first.clone()];
    for i in 0..30u64 {
        let keys = if i % 2 == 0 { &alice } else { &bob };
        let event = EventBuilder::new(Kind::TextNote, format!("reply {i} #nostr"))
            .tags([
                Tag::event(first.id),
                Tag::public_key(alice.public_key()),
                Tag::hashtag("nostr"),
            ])
            .custom_created_at(Timestamp::from(t + 1 + i))
            .finalize(keys)
            .expect("sign");
        out.push(event);
    }
    let reaction = EventBuilder::new(Kind::Reaction, "+")
        .tags([Tag::event(first.id), Tag::public_key(alice.public_key())])
        .custom_created_at(Timestamp::from(t + 40))
        .finalize(&bob)
        .expect("sign");
    let profile = EventBuilder::new(Kind::Metadata, r#"{"name":"bob","about":"ünïcode"}"#)
        .custom_created_at(Timestamp::from(t + 41))
        .finalize(&bob)
        .expect("sign");
    let follows = EventBuilder::new(Kind::ContactList, "")
        .tags([Tag::public_key(alice.public_key())])
        .custom_created_at(Timestamp::from(t + 42))
        .finalize(&bob)
        .expect("sign");
    out.extend([reaction, profile, follows]);
    out
}

fn parsed(lines: &[String]) -> BTreeSet<String> {
    lines
        .iter()
        .map(|l| Event::from_json(l).expect("an event line").as_json())
        .collect()
}

#[test]
fn relay_export_and_import_round_trip_through_strfry_export_and_import() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let events = corpus();
    let db = tmp.path().join("ours.sqlite");
    let lines: String = events.iter().map(|e| e.as_json() + "\n").collect();
    let out = our_relay_cli(&db, &["import"], lines.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    let out = our_relay_cli(&db, &["export"], b"");
    let ours = lines_of(out);
    assert_eq!(ours.len(), events.len());

    let station = Strfry::start();
    let out = station.run(&["import"], (ours.join("\n") + "\n").as_bytes());
    assert!(out.status.success(), "strfry import: {}", stderr(&out));
    let theirs = station.export();
    assert_eq!(theirs.len(), events.len(), "strfry kept every event");
    // Every field and signature survives. strfry writes its keys in sorted order
    // (`{"content","created_at","id",…}`), we keep an event's text as it arrived.
    assert_eq!(parsed(&theirs), parsed(&ours));
    let line_set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<String>>();
    let sorted_keys = |line: &String| {
        let value: serde_json::Value = serde_json::from_str(line).expect("json");
        value.to_string() // serde_json's map is a BTreeMap here: keys sorted, no spaces
    };
    let theirs_set = line_set(&theirs);
    assert_eq!(
        ours.iter().map(sorted_keys).collect::<BTreeSet<_>>(),
        theirs_set,
        "strfry's lines are ours with the keys sorted, byte for byte"
    );

    let back = tmp.path().join("back.sqlite");
    let out = our_relay_cli(&back, &["import"], (theirs.join("\n") + "\n").as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    let out = our_relay_cli(&back, &["export"], b"");
    let again = lines_of(out);
    // Ours → strfry → ours gives back our lines byte for byte.
    let same = line_set(&again) == line_set(&ours);
    assert!(
        same,
        "relay export → strfry import/export → relay import/export: not byte-exact"
    );
}

/// A small deterministic generator (xorshift64*), so that a failing filter can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const HASHTAGS: [&str; 5] = ["nostr", "astroport", "g1", "zen", "uplanet"];

/// 10,000 events of 20 authors, each at its own second: notes with `#t`, `#e` and `#p` tags,
/// reactions, and replaceable profiles and contact lists (several versions each).
fn differential_corpus(rng: &mut Rng) -> (Vec<Keys>, Vec<Event>) {
    let authors: Vec<Keys> = (0..20).map(|_| Keys::generate()).collect();
    let base = now() - 20_000;
    let mut events: Vec<Event> = Vec::with_capacity(10_000);
    for i in 0..10_000u64 {
        let keys = rng.pick(&authors);
        let at = Timestamp::from(base + i);
        let kind = match rng.below(20) {
            0 => Kind::Metadata,
            1 => Kind::ContactList,
            2..=4 => Kind::Reaction,
            _ => Kind::TextNote,
        };
        let mut tags = Vec::new();
        if kind != Kind::Metadata && !events.is_empty() && rng.below(2) == 0 {
            let target = rng.pick(&events).id;
            tags.push(Tag::event(target));
        }
        if rng.below(3) == 0 {
            tags.push(Tag::public_key(rng.pick(&authors).public_key()));
        }
        if kind == Kind::TextNote && rng.below(3) == 0 {
            tags.push(Tag::hashtag(*rng.pick(&HASHTAGS)));
        }
        let event = EventBuilder::new(kind, format!("event {i}"))
            .tags(tags)
            .custom_created_at(at)
            .finalize(keys)
            .expect("sign");
        events.push(event);
    }
    (authors, events)
}

/// A random filter over the corpus, always with a limit (strfry caps a REQ at 500 by default).
fn random_filter(rng: &mut Rng, authors: &[Keys], events: &[Event]) -> Filter {
    let mut f = Filter::new().limit(1 + rng.below(500) as usize);
    if rng.below(2) == 0 {
        let n = 1 + rng.below(5);
        f = f.authors((0..n).map(|_| rng.pick(authors).public_key()));
    }
    if rng.below(2) == 0 {
        let kinds = [
            Kind::TextNote,
            Kind::Reaction,
            Kind::Metadata,
            Kind::ContactList,
        ];
        let n = 1 + rng.below(3);
        f = f.kinds((0..n).map(|_| *rng.pick(&kinds)));
    }
    match rng.below(6) {
        0 => f = f.event(rng.pick(events).id),
        1 => f = f.pubkey(rng.pick(authors).public_key()),
        2 => f = f.hashtag(*rng.pick(&HASHTAGS)),
        3 => f = f.ids((0..1 + rng.below(20)).map(|_| rng.pick(events).id)),
        _ => {}
    }
    if rng.below(3) == 0 {
        let first = events[0].created_at.as_secs();
        let since = first + rng.below(10_000);
        f = f.since(Timestamp::from(since));
        if rng.below(2) == 0 {
            f = f.until(Timestamp::from(since + rng.below(3_000)));
        }
    }
    f
}

/// Filters compared between our relay and strfry.
const DIFFERENTIAL_FILTERS: usize = 300;

#[test]
fn our_relay_and_strfry_answer_the_same_reqs_with_the_same_events() {
    let seed = 0x5eed_0021_u64;
    let mut rng = Rng(seed);
    let (authors, events) = differential_corpus(&mut rng);
    let lines: String = events.iter().map(|e| e.as_json() + "\n").collect();
    let ours = OurRelay::start("");
    let out = our_relay_cli(&ours.db, &["import"], lines.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    let station = Strfry::start();
    let out = station.run(&["import"], lines.as_bytes());
    assert!(out.status.success(), "strfry import: {}", stderr(&out));
    // Replaceable events leave only their latest version on both sides.
    assert_eq!(
        ours.stored_ids(),
        station.stored_ids(),
        "the same events kept"
    );
    let answered = runtime().block_on(async {
        let mut answered = 0;
        for n in 0..DIFFERENTIAL_FILTERS {
            let filter = random_filter(&mut rng, &authors, &events);
            let a = query_ordered(&ours.url, filter.clone()).await;
            let b = query_ordered(&station.url, filter.clone()).await;
            assert_eq!(
                a,
                b,
                "filter #{n} (seed {seed:#x}) {}: ours {} events, strfry {}",
                filter.as_json(),
                a.len(),
                b.len()
            );
            answered += usize::from(!a.is_empty());
        }
        answered
    });
    // Most filters match something, so the comparison is not between two empty answers.
    assert!(
        answered > DIFFERENTIAL_FILTERS / 2,
        "only {answered} filters matched events"
    );
}
