//! Store behaviour on a real SQLite file: NIP-01 replacement, NIP-09 deletions, filters, order.

use nostr::prelude::*;

use super::*;

fn at(keys: &Keys, kind: u16, tags: Vec<Tag>, created_at: u64, content: &str) -> Event {
    EventBuilder::new(Kind::from(kind), content)
        .tags(tags)
        .custom_created_at(Timestamp::from(created_at))
        .finalize(keys)
        .expect("sign")
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tmp");
    let store =
        Store::open(&dir.path().join("relay.sqlite"), EventLimits::default()).expect("open");
    (dir, store)
}

async fn ids(store: &Store, filter: Filter) -> Vec<EventId> {
    store
        .query(filter, None)
        .await
        .expect("query")
        .into_iter()
        .map(|e| e.id)
        .collect()
}

/// The ids of `events` matching `filter` in the exact order of every answer: newest first,
/// lowest id first on a tie.
fn exact_order<'a>(events: impl IntoIterator<Item = &'a Event>, filter: &Filter) -> Vec<EventId> {
    let mut want: Vec<&Event> = events
        .into_iter()
        .filter(|e| filter.match_event(e, MatchEventOptions::default()))
        .collect();
    want.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    want.iter().map(|e| e.id).collect()
}

/// The cursor a page that ended on `event` hands to the next.
fn cursor_after(event: &Event) -> Cursor {
    Cursor {
        created_at: event.created_at.as_secs() as i64,
        id: event.id.to_bytes().to_vec(),
    }
}

/// One page's ids, and whether another page follows.
async fn page_ids(
    store: &Store,
    filter: &Filter,
    limit: usize,
    after: Option<Cursor>,
) -> (Vec<EventId>, bool) {
    let page = store
        .query_page(filter.clone(), Some(limit), after)
        .await
        .expect("page");
    let ids = page.rows.iter().map(|(id, _)| *id).collect();
    (ids, page.next.is_some())
}

#[tokio::test]
async fn duplicates_and_bad_events_are_reported_per_event() {
    let (_dir, store) = open();
    let keys = Keys::generate();
    let a = at(&keys, 1, vec![], 100, "a");
    let mut forged = at(&keys, 1, vec![], 101, "b");
    forged.content = "tampered".into();
    let ephemeral = at(&keys, 20_001, vec![], 102, "c");
    let big = at(&keys, 1, vec![], 103, &"x".repeat(70_000));
    let out = store
        .insert(vec![a.clone(), a.clone(), forged, ephemeral, big])
        .await
        .expect("insert");
    assert_eq!(out[0], Outcome::Inserted { replaced: 0 });
    assert_eq!(out[1], Outcome::Duplicate);
    assert_eq!(out[2], Outcome::Rejected(Rejection::InvalidId));
    assert_eq!(out[3], Outcome::Rejected(Rejection::Ephemeral));
    assert!(matches!(
        out[4],
        Outcome::Rejected(Rejection::TooLarge { .. })
    ));
    assert_eq!(ids(&store, Filter::new()).await, vec![a.id]);
    let again = store.insert(vec![a.clone()]).await.expect("again");
    assert_eq!(again, vec![Outcome::Duplicate]);
}

#[tokio::test]
async fn replaceable_keeps_newest_and_lowest_id_on_a_tie() {
    let (_dir, store) = open();
    let keys = Keys::generate();
    let old = at(&keys, 0, vec![], 100, "old");
    let new = at(&keys, 0, vec![], 200, "new");
    assert_eq!(
        store.insert(vec![old.clone()]).await.expect("old"),
        vec![Outcome::Inserted { replaced: 0 }]
    );
    assert_eq!(
        store.insert(vec![new.clone()]).await.expect("new"),
        vec![Outcome::Inserted { replaced: 1 }]
    );
    assert_eq!(
        store.insert(vec![old]).await.expect("old again"),
        vec![Outcome::Superseded]
    );
    // Two versions at the same second: the lowest id stays, whatever the arrival order.
    let t1 = at(&keys, 3, vec![], 300, "x");
    let t2 = at(&keys, 3, vec![], 300, "y");
    let (low, high) = if t1.id < t2.id { (t1, t2) } else { (t2, t1) };
    store.insert(vec![high.clone()]).await.expect("high");
    assert_eq!(
        store.insert(vec![low.clone()]).await.expect("low"),
        vec![Outcome::Inserted { replaced: 1 }]
    );
    assert_eq!(
        store.insert(vec![high]).await.expect("high again"),
        vec![Outcome::Superseded]
    );
    let kept = ids(&store, Filter::new().author(keys.public_key())).await;
    assert_eq!(kept.len(), 2);
    assert!(kept.contains(&new.id) && kept.contains(&low.id));
}

#[tokio::test]
async fn addressable_versions_are_per_d_tag() {
    let (_dir, store) = open();
    let keys = Keys::generate();
    let a1 = at(&keys, 30_023, vec![Tag::identifier("a")], 100, "a1");
    let a2 = at(&keys, 30_023, vec![Tag::identifier("a")], 200, "a2");
    let b1 = at(&keys, 30_023, vec![Tag::identifier("b")], 100, "b1");
    let out = store
        .insert(vec![a1, a2.clone(), b1.clone()])
        .await
        .expect("insert");
    assert_eq!(out[1], Outcome::Inserted { replaced: 1 });
    let mut got = ids(&store, Filter::new().kind(Kind::from(30_023))).await;
    got.sort();
    let mut want = vec![a2.id, b1.id];
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test]
async fn deletions_respect_authors_and_are_not_resurrected() {
    let (_dir, store) = open();
    let alice = Keys::generate();
    let mallory = Keys::generate();
    let note = at(&alice, 1, vec![], 100, "mine");
    let later = at(&alice, 1, vec![], 101, "deleted before it arrived");
    store.insert(vec![note.clone()]).await.expect("note");
    // Mallory cannot delete Alice's note.
    let forged = at(&mallory, 5, vec![Tag::event(note.id)], 150, "");
    store.insert(vec![forged]).await.expect("forged");
    assert_eq!(ids(&store, Filter::new().id(note.id)).await, vec![note.id]);
    // Alice can, and the note stays gone when a peer offers it again.
    let del = at(
        &alice,
        5,
        vec![Tag::event(note.id), Tag::event(later.id)],
        200,
        "",
    );
    store.insert(vec![del.clone()]).await.expect("delete");
    assert!(ids(&store, Filter::new().id(note.id)).await.is_empty());
    let back = store
        .insert(vec![note.clone(), later])
        .await
        .expect("again");
    assert_eq!(back, vec![Outcome::Rejected(Rejection::Deleted); 2]);
    // The same id from another author (a forgery would not verify) is a different event: no
    // tombstone applies to Mallory's own events.
    let m = at(&mallory, 1, vec![], 100, "mallory");
    assert_eq!(
        store.insert(vec![m]).await.expect("m"),
        vec![Outcome::Inserted { replaced: 0 }]
    );
    // The deletion itself is kept (peers learn of it from us).
    assert_eq!(
        ids(
            &store,
            Filter::new().kind(Kind::from(5)).author(alice.public_key())
        )
        .await,
        vec![del.id]
    );
}

#[tokio::test]
async fn a_tag_deletion_covers_versions_up_to_its_time() {
    let (_dir, store) = open();
    let keys = Keys::generate();
    let coord = format!("30023:{}:post", keys.public_key().to_hex());
    let v1 = at(&keys, 30_023, vec![Tag::identifier("post")], 100, "v1");
    store.insert(vec![v1.clone()]).await.expect("v1");
    let del = at(
        &keys,
        5,
        vec![Tag::parse(["a", coord.as_str()]).expect("a tag")],
        150,
        "",
    );
    store.insert(vec![del]).await.expect("del");
    assert!(ids(&store, Filter::new().id(v1.id)).await.is_empty());
    let v0 = at(&keys, 30_023, vec![Tag::identifier("post")], 120, "v0");
    let v2 = at(&keys, 30_023, vec![Tag::identifier("post")], 200, "v2");
    let out = store.insert(vec![v0, v2.clone()]).await.expect("later");
    assert_eq!(out[0], Outcome::Rejected(Rejection::Deleted));
    assert_eq!(out[1], Outcome::Inserted { replaced: 0 });
}

#[tokio::test]
async fn filters_order_and_limits() {
    let (_dir, store) = open();
    let keys = Keys::generate();
    let other = Keys::generate();
    let mut events = Vec::new();
    for i in 0..10u64 {
        // Pairs share a second, to check the tie order.
        events.push(at(
            &keys,
            1,
            vec![Tag::hashtag(if i % 2 == 0 { "even" } else { "odd" })],
            1_000 + i / 2,
            &format!("n{i}"),
        ));
    }
    let reply = at(
        &other,
        1,
        vec![Tag::event(events[0].id), Tag::public_key(keys.public_key())],
        2_000,
        "re",
    );
    events.push(reply.clone());
    store.insert(events.clone()).await.expect("insert");

    let all = ids(&store, Filter::new()).await;
    let mut want: Vec<&Event> = events.iter().collect();
    want.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    assert_eq!(all, want.iter().map(|e| e.id).collect::<Vec<_>>());

    let limited = store
        .query(Filter::new().author(keys.public_key()), Some(3))
        .await
        .expect("limited");
    assert_eq!(limited.len(), 3);
    assert_eq!(limited[0].created_at.as_secs(), 1_004);

    assert_eq!(ids(&store, Filter::new().hashtag("even")).await.len(), 5);
    assert_eq!(
        ids(&store, Filter::new().event(events[0].id)).await,
        vec![reply.id]
    );
    assert_eq!(
        ids(&store, Filter::new().pubkey(keys.public_key())).await,
        vec![reply.id]
    );
    let window = Filter::new()
        .since(Timestamp::from(1_001))
        .until(Timestamp::from(1_002));
    assert_eq!(ids(&store, window.clone()).await.len(), 4);
    assert_eq!(store.count(window).await.expect("count"), 4);
    assert_eq!(store.items(Filter::new()).await.expect("items").len(), 11);
    let stats = store.stats().await.expect("stats");
    assert_eq!(stats.events, 11);
    assert_eq!(stats.kinds.get(&1), Some(&11));
    assert_eq!(stats.pubkeys, 2);
}

#[tokio::test]
async fn live_subscribers_see_only_new_events() {
    let (_dir, store) = open();
    let keys = Keys::generate();
    let a = at(&keys, 1, vec![], 1, "a");
    store.insert(vec![a.clone()]).await.expect("a");
    let mut live = store.subscribe();
    let b = at(&keys, 1, vec![], 2, "b");
    store.insert(vec![a, b.clone()]).await.expect("a b");
    assert_eq!(live.recv().await.expect("live").id, b.id);
    assert!(live.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_checked_in_parallel_are_written_in_arrival_order() {
    let (_dir, store) = open();
    let keys = Keys::generate();
    // 100 versions of one profile, oldest first, each its own check (as the relay submits them),
    // with a forged event among them.
    let mut events: Vec<Event> = (0..100)
        .map(|i| at(&keys, 0, vec![], 1_000 + i, &format!("v{i}")))
        .collect();
    events[50].content = "tampered".into();
    let mut checking = Vec::new();
    for e in &events {
        checking.push(store.check(vec![e.clone()]).await.expect("check"));
    }
    let mut pending = Vec::new();
    for c in checking {
        pending.push(store.enqueue(c).await.expect("enqueue"));
    }
    let mut outcomes = Vec::new();
    for p in pending {
        outcomes.extend(p.wait().await.expect("commit"));
    }
    for (i, outcome) in outcomes.iter().enumerate() {
        let expected = match i {
            0 => Outcome::Inserted { replaced: 0 },
            50 => Outcome::Rejected(Rejection::InvalidId),
            // Each version replaces the one before it: the writer saw them in arrival order.
            _ => Outcome::Inserted { replaced: 1 },
        };
        assert_eq!(outcome, &expected, "event {i}");
    }
    assert_eq!(
        ids(&store, Filter::new().kind(Kind::Metadata)).await,
        vec![events[99].id]
    );
}

#[tokio::test]
async fn since_and_until_beyond_i64_neither_wrap_nor_match_everything() {
    let (_dir, store) = open();
    let keys = Keys::generate();
    let a = at(&keys, 1, vec![], 1_000, "a");
    store.insert(vec![a.clone()]).await.expect("insert");
    let huge = Timestamp::from(1u64 << 63);
    assert_eq!(ids(&store, Filter::new().since(huge)).await, vec![]);
    let max = Timestamp::from(u64::MAX);
    assert_eq!(ids(&store, Filter::new().until(max)).await, vec![a.id]);
    assert_eq!(
        store
            .items(Filter::new().until(max))
            .await
            .expect("items")
            .len(),
        1
    );
}

#[tokio::test]
async fn events_from_the_far_future_are_refused_and_near_ones_kept() {
    let (_dir, store) = open();
    let keys = Keys::generate();
    let now = Timestamp::now().as_secs();
    let soon = at(&keys, 1, vec![], now + 60, "clock a minute ahead");
    let far = at(&keys, 1, vec![], now + 3_600, "an hour ahead");
    let max = at(&keys, 1, vec![], u64::MAX, "the end of time");
    let out = store
        .insert(vec![soon.clone(), far, max])
        .await
        .expect("insert");
    assert_eq!(out[0], Outcome::Inserted { replaced: 0 });
    for refused in &out[1..] {
        let Outcome::Rejected(r) = refused else {
            panic!("{refused:?} was stored");
        };
        assert!(
            r.reason().starts_with("invalid: created_at"),
            "{}",
            r.reason()
        );
    }
    assert_eq!(ids(&store, Filter::new()).await, vec![soon.id]);
}

#[tokio::test]
async fn a_repeated_tag_matches_its_event_once_with_one_value_or_two() {
    let (_dir, store) = open();
    let keys = Keys::generate();
    let t = |v: &str| Tag::hashtag(v);
    let twice = at(&keys, 1, vec![t("x"), t("x"), t("y")], 100, "twice");
    let other = at(&keys, 1, vec![t("x")], 99, "other");
    store
        .insert(vec![twice.clone(), other.clone()])
        .await
        .expect("insert");
    // A limit of 2 counts events, not tag rows: both come back, each once.
    for filter in [
        Filter::new().hashtag("x"),
        Filter::new().hashtags(["x", "y"]),
    ] {
        let found = store.query(filter.clone(), Some(2)).await.expect("query");
        let found: Vec<EventId> = found.into_iter().map(|e| e.id).collect();
        assert_eq!(found, vec![twice.id, other.id], "{filter:?}");
        assert_eq!(store.count(filter).await.expect("count"), 2);
    }
}

#[tokio::test]
async fn large_answers_come_in_byte_bounded_pages_in_order_without_repeats() {
    let (_dir, store) = open();
    let keys = Keys::generate();
    // 60 events of 50 KB: 3 MB of JSON, so about three pages; pairs share a second, so
    // pages also end inside runs of equal `created_at`.
    let big = "x".repeat(50_000);
    let events: Vec<Event> = (0..60)
        .map(|i| {
            let content = format!("{i} {big}");
            at(&keys, 1, vec![Tag::hashtag("t")], 1_000 + i / 2, &content)
        })
        .collect();
    store.insert(events.clone()).await.expect("insert");
    for filter in [Filter::new(), Filter::new().hashtag("t")] {
        let first = store
            .query_page(filter.clone(), Some(500), None)
            .await
            .expect("page");
        let bytes: usize = first.rows.iter().map(|(_, j)| j.len()).sum();
        assert!(first.next.is_some(), "3 MB is more than a page");
        // A page passes its budget by the row that crossed it, and (a tag-driven one, whose
        // ties the reader sorts) by the rest of that row's second: one more event here.
        assert!(
            (PAGE_BYTES..PAGE_BYTES + 2 * 51_000).contains(&bytes),
            "{bytes}"
        );
        let paged = ids(&store, filter.clone()).await;
        let mut expected = events.clone();
        expected.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        let expected: Vec<EventId> = expected.iter().map(|e| e.id).collect();
        assert_eq!(paged, expected, "{filter:?}");
        let capped = store.query(filter, Some(25)).await.expect("capped");
        assert_eq!(capped.len(), 25, "the limit holds across pages");
    }
}

/// A tag-driven page is read in the tag index's order and its ties sorted by the reader: every
/// limit, cut inside a run of equal `created_at` or not, returns the first rows of the exact
/// order (newest first, lowest id first), and a run of ties longer than the reader sorts falls
/// back to SQLite's order with the same answer.
#[tokio::test]
async fn tag_pages_cut_inside_runs_of_ties_return_the_lowest_ids_first() {
    let (_dir, store) = open();
    let keys = Keys::generate();
    let tag = || vec![Tag::hashtag("t")];
    // Seconds 100..112 hold runs of 1 to 5 events; second 50 holds a run longer than
    // MAX_TIE_RUN; an untagged event in each second must never appear.
    let mut events = Vec::new();
    for second in 100..112u64 {
        for n in 0..=(second % 5) {
            events.push(at(&keys, 1, tag(), second, &format!("{second} {n}")));
        }
        events.push(at(&keys, 1, vec![], second, "untagged"));
    }
    let flood: Vec<Event> = (0..MAX_TIE_RUN + 5)
        .map(|n| at(&keys, 1, tag(), 50, &format!("flood {n}")))
        .collect();
    store.insert(events.clone()).await.expect("insert");
    store.insert(flood.clone()).await.expect("insert flood");
    let tagged_t = Filter::new().hashtag("t");
    let expected = exact_order(events.iter().chain(&flood), &tagged_t);
    let tagged = events.len() - 12;
    for limit in (1..=tagged + 3).chain([tagged + 500, expected.len(), expected.len() + 1]) {
        let (got, more) = page_ids(&store, &tagged_t, limit, None).await;
        assert_eq!(got, expected[..limit.min(expected.len())], "limit {limit}");
        assert!(!more, "a small answer is one page");
    }
    // After a cursor inside a run: the rest of the run, then older seconds.
    let fourth = events.iter().find(|e| e.id == expected[3]).expect("event");
    let (got, _) = page_ids(&store, &tagged_t, 6, Some(cursor_after(fourth))).await;
    assert_eq!(got, expected[4..10]);
}

/// A filter of a few authors is answered by merging one index range per author: for every
/// limit (cut inside a second shared by several authors or not), with kinds, a window and a
/// cursor, it returns what the exact order says; and so does a filter of more authors than
/// the merge takes.
#[tokio::test]
async fn a_few_authors_merged_per_author_answer_in_the_exact_order() {
    let (_dir, store) = open();
    let keys: Vec<Keys> = (0..34).map(|_| Keys::generate()).collect();
    let mut events = Vec::new();
    for (n, k) in keys.iter().enumerate() {
        for i in 0..6u64 {
            // Seconds shared across authors (ties), and two kinds.
            let kind = if i % 3 == 0 { 6 } else { 1 };
            events.push(at(
                k,
                kind,
                vec![],
                1_000 + i + (n as u64 % 3),
                &format!("{n} {i}"),
            ));
        }
    }
    store.insert(events.clone()).await.expect("insert");
    let few = |n: usize| keys[..n].iter().map(|k| k.public_key());
    let filters = [
        Filter::new().authors(few(2)),
        Filter::new().authors(few(3)).kind(Kind::TextNote),
        Filter::new()
            .authors(few(5))
            .kinds([Kind::TextNote, Kind::Repost]),
        Filter::new()
            .authors(few(4))
            .since(Timestamp::from(1_002))
            .until(Timestamp::from(1_005)),
        Filter::new().authors(few(34)),
    ];
    for filter in &filters {
        let all = exact_order(&events, filter);
        for limit in [1, 2, 3, 5, 8, 13, 40, 500] {
            let (got, _) = page_ids(&store, filter, limit, None).await;
            assert_eq!(got, all[..limit.min(all.len())], "{filter:?} limit {limit}");
        }
    }
    // A cursor inside a shared second: the rest of it, then older ones, across authors.
    let filter = Filter::new().authors(few(3));
    let all = exact_order(&events, &filter);
    let seventh = events.iter().find(|e| e.id == all[6]).expect("event");
    let (got, _) = page_ids(&store, &filter, 5, Some(cursor_after(seventh))).await;
    assert_eq!(got, all[7..12]);
}

/// The plans the two rewrites exist for, as SQLite chooses them (no statistics are kept, so an
/// empty file plans as a full one): each author's arm walks `events_pubkey` in order and the
/// merge needs no sort; a one-value tag page walks `tags_value` with no sort at all.
#[tokio::test]
async fn the_merge_and_the_tag_page_use_their_indexes_without_a_sort() {
    let (_dir, store) = open();
    let authors: Vec<PublicKey> = (0..10).map(|_| Keys::generate().public_key()).collect();
    let recent = Filter::new()
        .authors(authors.clone())
        .since(Timestamp::from(1_000))
        .limit(500);
    let feed = Filter::new().authors(authors).kind(Kind::TextNote);
    let thread = Filter::new().event(EventId::from_byte_array([7; 32]));
    let plans = store
        .read(move |conn| {
            let plan = |(sql, params): (String, Vec<rusqlite::types::Value>)| {
                let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| {
                    r.get::<_, String>(3)
                })?;
                Ok::<_, StoreError>(rows.collect::<Result<Vec<_>, _>>()?.join("; "))
            };
            Ok(vec![
                plan(query::build(&recent, Select::Json, Some(500), None))?,
                plan(query::build(&feed, Select::Json, Some(500), None))?,
                plan(query::build_time_ordered(&thread, None))?,
            ])
        })
        .await
        .expect("plans");
    for plan in &plans[..2] {
        assert!(plan.contains("MERGE (UNION ALL)"), "{plan}");
        assert!(plan.contains("USING INDEX events_pubkey"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }
    assert!(
        plans[2].contains("COVERING INDEX tags_value"),
        "{}",
        plans[2]
    );
    assert!(!plans[2].contains("TEMP B-TREE"), "{}", plans[2]);
}
