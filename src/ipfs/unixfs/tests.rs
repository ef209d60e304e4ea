//! UnixFS round trips and the reader's refusals, on DAGs built by us or crafted byte by byte
//! (the same CIDs as Kubo are checked against real Kubo in `tests/it/ipfs.rs`).

use std::fs;
use std::path::Path;

use cid::Cid;

use super::*;
use crate::ipfs::block::{Block, BlockError, BlockSink, BlockSource, MemoryBlocks, SourceError};

use super::dagpb::{DIRECTORY, FILE, unixfs_data as unixfs};

/// A dag-pb node stored in `blocks`; returns its CID.
fn node(blocks: &mut MemoryBlocks, links: &[(Cid, &[u8])], data: Vec<u8>) -> Cid {
    let block = dagpb::node(links, &data).expect("block");
    let cid = *block.cid();
    blocks.put(block).expect("put");
    cid
}

fn file_leaf(blocks: &mut MemoryBlocks, text: &[u8]) -> Cid {
    node(
        blocks,
        &[],
        unixfs(FILE, text, Some(text.len() as u64), &[]),
    )
}

fn dir(blocks: &mut MemoryBlocks, links: &[(Cid, &[u8])]) -> Cid {
    node(blocks, links, unixfs(DIRECTORY, &[], None, &[]))
}

/// Every path below `root` with its bytes (`None` for a folder), sorted.
fn snapshot(root: &Path) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("ls") {
            let path = entry.expect("entry").path();
            let rel = path
                .strip_prefix(root)
                .expect("below")
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                stack.push(path);
                out.push((rel, None));
            } else {
                out.push((rel, Some(fs::read(&path).expect("read"))));
            }
        }
    }
    out.sort();
    out
}

fn station_folder(root: &Path) {
    fs::create_dir_all(root.join("sub/deeper")).expect("mkdir");
    fs::create_dir_all(root.join("empty")).expect("mkdir");
    fs::write(root.join("12345.json"), br#"{"ipfsnodeid":"12D3"}"#).expect("write");
    fs::write(root.join("_MySwarm.moats"), b"1767225600").expect("write");
    fs::write(root.join("sub/été ✓.txt"), "unicode").expect("write");
    let big: Vec<u8> = (0..600_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(root.join("sub/deeper/big.bin"), big).expect("write");
    fs::write(root.join(".hidden"), b"skipped").expect("write");
}

fn fetch(
    blocks: &MemoryBlocks,
    root: &Cid,
    target: &Path,
    limits: &FolderLimits,
) -> Result<Fetched, ReadError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(fetch_folder(blocks, root, target, limits))
}

#[test]
fn a_built_folder_reads_back_identically_without_its_hidden_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    station_folder(&tmp.path().join("src"));
    let mut blocks = MemoryBlocks::default();
    let added = add_path(
        &tmp.path().join("src"),
        &mut blocks,
        &FolderLimits::STATION,
        Hidden::Skip,
    )
    .expect("add");
    assert_eq!(
        added.blocks,
        blocks.len(),
        "every block reached the sink once"
    );
    let target = tmp.path().join("swarm/station");
    let fetched = fetch(&blocks, &added.root, &target, &FolderLimits::STATION).expect("fetch");
    fs::remove_file(tmp.path().join("src/.hidden")).expect("rm");
    assert_eq!(snapshot(&target), snapshot(&tmp.path().join("src")));
    assert_eq!(
        (fetched.files, fetched.dirs, fetched.bytes),
        (4, 3, added.bytes)
    );
    assert_eq!(
        fs::read_dir(tmp.path().join("swarm")).expect("ls").count(),
        1,
        "no temp folder left"
    );
}

#[test]
fn a_new_copy_replaces_the_old_one_whole_and_a_refused_one_keeps_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut blocks = MemoryBlocks::default();
    let (one, two) = (file_leaf(&mut blocks, b"1"), file_leaf(&mut blocks, b"2"));
    let first = dir(&mut blocks, &[(one, b"a"), (two, b"b")]);
    let second = dir(&mut blocks, &[(two, b"c")]);
    let hostile = dir(&mut blocks, &[(one, b"ok"), (two, b"..")]);
    let target = tmp.path().join("station");
    fetch(&blocks, &first, &target, &FolderLimits::STATION).expect("first");
    fetch(&blocks, &second, &target, &FolderLimits::STATION).expect("second");
    assert_eq!(snapshot(&target), vec![("c".into(), Some(b"2".to_vec()))]);
    let err = fetch(&blocks, &hostile, &target, &FolderLimits::STATION).expect_err("refused");
    assert!(
        matches!(err, ReadError::BadName { ref name } if name == ".."),
        "{err}"
    );
    assert_eq!(
        snapshot(&target),
        vec![("c".into(), Some(b"2".to_vec()))],
        "previous copy kept"
    );
    assert_eq!(
        fs::read_dir(tmp.path()).expect("ls").count(),
        1,
        "no temp folder left"
    );
}

#[test]
fn dot_names_nul_and_slashes_are_refused_and_nothing_is_written() {
    for name in [&b"."[..], b"..", b"a\0b", b"a/b", b"/etc", b""] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut blocks = MemoryBlocks::default();
        let leaf = file_leaf(&mut blocks, b"x");
        let root = dir(&mut blocks, &[(leaf, name)]);
        let target = tmp.path().join("station");
        let err = fetch(&blocks, &root, &target, &FolderLimits::STATION).expect_err("refused");
        let refused = matches!(err, ReadError::BadName { .. } | ReadError::Malformed { .. });
        assert!(refused, "{name:?}: {err}");
        assert_eq!(
            fs::read_dir(tmp.path()).expect("ls").count(),
            0,
            "{name:?}: nothing written"
        );
    }
}

#[test]
fn symlinks_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    std::os::unix::fs::symlink("/etc/passwd", src.join("passwd")).expect("symlink");
    let mut blocks = MemoryBlocks::default();
    let added = add_path(&src, &mut blocks, &FolderLimits::STATION, Hidden::Skip).expect("add");
    let err = fetch(
        &blocks,
        &added.root,
        &tmp.path().join("out"),
        &FolderLimits::STATION,
    )
    .expect_err("symlink");
    assert!(
        matches!(err, ReadError::Symlink(ref p) if p == "passwd"),
        "{err}"
    );
    assert!(!tmp.path().join("out").exists());
}

/// Serves one CID with other bytes: a peer lying about a block.
struct Tampering<'a> {
    blocks: &'a MemoryBlocks,
    victim: Cid,
}

impl BlockSource for Tampering<'_> {
    async fn get(&self, cid: &Cid) -> Result<Block, SourceError> {
        if *cid == self.victim {
            return Ok(Block::new(*cid, b"not the bytes".to_vec())?);
        }
        self.blocks.get(cid).await
    }
}

#[test]
fn a_block_whose_hash_does_not_match_fails_the_read() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut blocks = MemoryBlocks::default();
    let leaf = file_leaf(&mut blocks, b"genuine");
    let root = dir(&mut blocks, &[(leaf, b"f")]);
    let source = Tampering {
        blocks: &blocks,
        victim: leaf,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let target = tmp.path().join("station");
    let err = runtime
        .block_on(fetch_folder(
            &source,
            &root,
            &target,
            &FolderLimits::STATION,
        ))
        .expect_err("bad block");
    assert!(
        matches!(
            err,
            ReadError::Source(SourceError::Block(BlockError::HashMismatch { .. }))
        ),
        "{err}"
    );
    assert_eq!(fs::read_dir(tmp.path()).expect("ls").count(), 0);
}

#[test]
fn a_file_announcing_one_gib_is_refused_before_its_blocks_are_fetched() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut blocks = MemoryBlocks::default();
    let chunk = vec![0u8; CHUNK_BYTES];
    let leaf = file_leaf(&mut blocks, &chunk);
    let count = 4096; // 4096 × 256 KiB = 1 GiB
    let links: Vec<(Cid, &[u8])> = (0..count).map(|_| (leaf, &b""[..])).collect();
    let sizes = vec![CHUNK_BYTES as u64; count];
    let big = node(
        &mut blocks,
        &links,
        unixfs(FILE, &[], Some(1 << 30), &sizes),
    );
    let root = dir(&mut blocks, &[(big, b"huge.bin")]);
    let err = fetch(
        &blocks,
        &root,
        &tmp.path().join("s"),
        &FolderLimits::STATION,
    )
    .expect_err("too big");
    assert!(
        matches!(err, ReadError::Limit { what: "bytes", .. }),
        "{err}"
    );
    assert_eq!(fs::read_dir(tmp.path()).expect("ls").count(), 0);
}

#[test]
fn a_ten_thousand_entry_folder_is_cut_at_the_entry_bound() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    for i in 0..10_000 {
        fs::write(src.join(format!("entry-{i:05}")), b"").expect("write");
    }
    let roomy = FolderLimits {
        max_entries: 20_000,
        max_blocks: 20_000,
        ..FolderLimits::STATION
    };
    let mut blocks = MemoryBlocks::default();
    let added = add_path(&src, &mut blocks, &roomy, Hidden::Skip)
        .expect("add (HAMT-sharded: above 256 KiB of links)");
    let err = fetch(
        &blocks,
        &added.root,
        &tmp.path().join("s"),
        &FolderLimits::STATION,
    )
    .expect_err("cut");
    assert!(
        matches!(
            err,
            ReadError::Limit {
                what: "entries",
                bound: 1000,
                ..
            }
        ),
        "{err}"
    );
    let roomy_read =
        fetch(&blocks, &added.root, &tmp.path().join("s"), &roomy).expect("read with room");
    assert_eq!(roomy_read.files, 10_000, "the HAMT walk finds every entry");
}

#[test]
fn folders_deeper_than_the_bound_are_refused_both_ways() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    let deep = (0..9).fold(src.clone(), |p, i| p.join(format!("d{i}")));
    fs::create_dir_all(&deep).expect("mkdir");
    let mut blocks = MemoryBlocks::default();
    let err = add_path(&src, &mut blocks, &FolderLimits::STATION, Hidden::Skip)
        .expect_err("too deep to add");
    assert!(
        matches!(
            err,
            BuildError::Limit {
                what: "levels of names",
                ..
            }
        ),
        "{err}"
    );
    let roomy = FolderLimits {
        max_depth: 20,
        ..FolderLimits::STATION
    };
    let added = add_path(&src, &mut blocks, &roomy, Hidden::Skip).expect("add");
    let err = fetch(
        &blocks,
        &added.root,
        &tmp.path().join("s"),
        &FolderLimits::STATION,
    )
    .expect_err("too deep");
    assert!(
        matches!(
            err,
            ReadError::Limit {
                what: "levels of names",
                bound: 8,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn cat_reads_one_file_by_path_within_its_bound() {
    let tmp = tempfile::tempdir().expect("tempdir");
    station_folder(&tmp.path().join("src"));
    let mut blocks = MemoryBlocks::default();
    let root = add_path(
        &tmp.path().join("src"),
        &mut blocks,
        &FolderLimits::STATION,
        Hidden::Skip,
    )
    .expect("add")
    .root;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let cat = |path: &str, max| runtime.block_on(cat_file(&blocks, &root, path, max));
    assert_eq!(cat("_MySwarm.moats", 64).expect("moats"), b"1767225600");
    assert_eq!(
        cat("sub/deeper/big.bin", 1 << 20).expect("big").len(),
        600_000
    );
    assert!(matches!(
        cat("sub/deeper/big.bin", 1000),
        Err(ReadError::Limit { .. })
    ));
    assert!(matches!(cat("nope", 64), Err(ReadError::NotFound(_))));
    assert!(matches!(cat("sub", 64), Err(ReadError::NotFound(_))));
}

#[test]
fn a_file_streams_any_range_in_both_leaf_layouts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("file");
    let chunk = 64 * 1024;
    let bytes: Vec<u8> = (0..chunk * 7 / 2).map(|i| (i * 31 % 251) as u8).collect();
    fs::write(&path, &bytes).expect("write");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    for raw_leaves in [false, true] {
        let layout = Layout {
            cid_version: cid::Version::V1,
            raw_leaves,
            chunk_bytes: chunk,
        };
        let mut blocks = MemoryBlocks::default();
        let root = add_path_as(
            &path,
            &mut blocks,
            &FolderLimits::STATION,
            Hidden::Skip,
            layout,
        )
        .expect("add")
        .root;
        let read = |range: std::ops::Range<u64>| {
            runtime.block_on(async {
                let mut file = FileStream::open(&blocks, &root, range).await.expect("open");
                assert_eq!(file.size(), bytes.len() as u64);
                let mut out = Vec::new();
                while let Some(piece) = file.next().await.expect("next") {
                    assert!(piece.len() <= chunk, "one block at a time");
                    out.extend(piece);
                }
                out
            })
        };
        let n = bytes.len() as u64;
        let c = chunk as u64;
        for (start, end) in [
            (0, u64::MAX),
            (0, 10),
            (c - 6, c + 20),
            (c * 2 + 1, n - 3),
            (n - 5, n + 100),
            (n, n + 10),
            (7, 7),
        ] {
            let want =
                &bytes[(start.min(n) as usize)..(end.min(n) as usize).max(start.min(n) as usize)];
            assert_eq!(
                read(start..end),
                want,
                "{start}..{end}, raw leaves {raw_leaves}"
            );
        }
    }
}

#[test]
fn a_file_nesting_more_pending_links_than_the_bound_is_refused_not_grown() {
    const WIDE: usize = 33_000;
    let mut blocks = MemoryBlocks::default();
    let leaf = file_leaf(&mut blocks, b"x");
    let leaves: Vec<(Cid, &[u8])> = vec![(leaf, &b""[..]); WIDE];
    let inner = node(
        &mut blocks,
        &leaves,
        unixfs(FILE, &[], Some(WIDE as u64), &vec![1; WIDE]),
    );
    let mut links = leaves.clone();
    links[0].0 = inner;
    let mut sizes = vec![1u64; WIDE];
    sizes[0] = WIDE as u64;
    let total = sizes.iter().sum();
    let root = node(&mut blocks, &links, unixfs(FILE, &[], Some(total), &sizes));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let result = runtime.block_on(async {
        let mut file = FileStream::open(&blocks, &root, 0..u64::MAX).await?;
        let mut read = 0;
        while let Some(bytes) = file.next().await? {
            read += bytes.len();
        }
        Ok::<usize, ReadError>(read)
    });
    assert!(
        matches!(
            result,
            Err(ReadError::Limit {
                what: "pending links",
                ..
            })
        ),
        "{result:?}"
    );
}
