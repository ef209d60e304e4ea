//! `add`, `cat`, `get` and `ls`: uploads unpacked to a scratch folder and added with Kubo's
//! layout (same CIDs), content read through UnixFS from the store or bitswap, all bounded.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use cid::Cid;
use serde::Serialize;
use tokio::sync::mpsc;

use super::call::Call;
use super::ipfs::Ipfs;
use super::multipart::{self, Part, PartKind};
use super::pin_set::PinKind;
use super::{Failure, Reply};
use crate::ipfs::block::{BlockSink, BlockSource, MemoryBlocks};
use crate::ipfs::unixfs::node::{self, NodeKind};
use crate::ipfs::unixfs::{self, FolderLimits, Hidden, Layout, Listing};

/// Bounds on one `add` and on the folder one `get` unpacks to disk before its tar is written:
/// the upload bound in bytes, a station's entry count, and a depth and block count that fit
/// 64 MiB of 256 KiB chunks with room for folders. A `get` of one file and a `cat` stream
/// instead, and have no such bound.
pub const CONTENT_LIMITS: FolderLimits = FolderLimits {
    max_bytes: multipart::MAX_UPLOAD_BYTES as u64,
    max_entries: multipart::MAX_PARTS,
    max_depth: 32,
    max_blocks: 8192,
};
/// Chunks of a streamed file waiting for the connection (each at most one block).
const FILE_QUEUE: usize = 4;
/// Bytes of a `get` tar stream handed to the connection at a time, and how many wait.
const TAR_CHUNK_BYTES: usize = 256 * 1024;
const TAR_QUEUE: usize = 4;
/// A `get` reader that takes nothing for this long is dropped, so it cannot hold the blocking
/// thread that writes its tar forever (a local client reads as fast as the disk gives).
const READER_STALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// Kubo's `ls` prints each link's type, which costs one block per link: at most this many.
const MAX_LS_LINKS: usize = multipart::MAX_PARTS;

/// The scratch file name of an upload that has none (stdin).
const BARE_NAME: &str = "stdin";
/// Distinguishes the scratch folders of concurrent calls.
static SCRATCH_COUNTER: AtomicU64 = AtomicU64::new(0);

/// One line of `add`: Kubo's `AddEvent` (progress off: no `Bytes`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct AddEvent {
    name: String,
    hash: String,
    size: String,
}

/// `add`'s options that change the result.
#[derive(Clone, Copy)]
struct AddOptions {
    wrap: bool,
    pin: bool,
    only_hash: bool,
    layout: Layout,
}

impl AddOptions {
    fn parse(call: &Call) -> Result<AddOptions, Failure> {
        let unsupported = |what: &str| {
            Failure::client(format!(
                "constellation adds with the balanced layout, sha2-256 and no inlining only: {what} is not supported"
            ))
        };
        if call.flag(&["trickle", "t"])? {
            return Err(unsupported("--trickle"));
        }
        if call.flag(&["inline"])? {
            return Err(unsupported("--inline"));
        }
        if let Some(hash) = call.option(&["hash"]).filter(|h| *h != "sha2-256") {
            return Err(unsupported(&format!("--hash={hash}")));
        }
        if call.flag(&["nocopy"])? || call.option(&["to-files"]).is_some() {
            return Err(unsupported("--nocopy / --to-files"));
        }
        let cid_version = match call.number(&["cid-version"], 0u8)? {
            0 => cid::Version::V0,
            1 => cid::Version::V1,
            other => {
                return Err(Failure::client(format!("unknown CID version: {other}")));
            }
        };
        // As Kubo: CIDv1 means raw leaves unless `--raw-leaves=false` says otherwise.
        let raw_leaves = call.flag_or(&["raw-leaves"], cid_version == cid::Version::V1)?;
        let chunk_bytes = chunk_size(call.option(&["chunker", "s"]).unwrap_or("size-262144"))?;
        Ok(AddOptions {
            wrap: call.flag(&["wrap-with-directory", "w"])?,
            pin: call.flag_or(&["pin"], true)?,
            only_hash: call.flag(&["only-hash", "n"])?,
            layout: Layout {
                cid_version,
                raw_leaves,
                chunk_bytes,
            },
        })
    }
}

/// `--chunker=size-N` as boxo parses it; `rabin` and `buzhash` are refused by name.
fn chunk_size(text: &str) -> Result<usize, Failure> {
    let Some(number) = text.strip_prefix("size-") else {
        return Err(Failure::client(format!(
            "constellation chunks by size only (size-N): --chunker={text} is not supported"
        )));
    };
    let bytes: usize = number
        .parse()
        .map_err(|e| Failure::client(format!("bad chunker size {number:?}: {e}")))?;
    if bytes == 0 {
        return Err(Failure::client("chunker size must be greater than 0"));
    }
    if bytes > unixfs::MAX_CHUNK_BYTES {
        return Err(Failure::client(format!(
            "chunker parameters may not exceed the maximum chunk size of {}",
            unixfs::MAX_CHUNK_BYTES
        )));
    }
    Ok(bytes)
}

/// `add`: the multipart upload unpacked into a scratch folder, then added as Kubo adds it.
pub async fn add(ipfs: &Ipfs, call: &Call) -> Result<Reply, Failure> {
    let options = AddOptions::parse(call)?;
    let _no_gc_meanwhile = ipfs.content_lock.read().await;
    let content_type = call.content_type.as_deref().unwrap_or("");
    let boundary = multipart::boundary(content_type).map_err(Failure::client)?;
    let parts = multipart::parse(&call.body, &boundary).map_err(Failure::client)?;
    if parts.is_empty() {
        return Err(Failure::client("no files given to add"));
    }
    // `echo … | ipfs add`: one file part with no name; Kubo names its event by the CID.
    let bare = matches!(&parts[..], [p] if p.path.is_empty() && p.kind == PartKind::File);
    if bare && options.wrap {
        return Err(Failure::client(
            "a file with no name cannot be wrapped in a directory",
        ));
    }
    let scratch = Scratch::new(&ipfs.scratch, "add")?;
    let (dir, store) = (scratch.path.clone(), ipfs.bitswap.store().clone());
    let built = tokio::task::spawn_blocking(move || build(&dir, &parts, options, bare, &store))
        .await
        .map_err(|e| Failure::normal(format!("add stopped: {e}")))?;
    drop(scratch);
    let (added, memory) = built?;
    let (mut body, mut provided) = (Vec::new(), Vec::new());
    for (name, root) in &added {
        let mut events = match options.only_hash {
            true => list_added(&memory, root, name).await?,
            false => list_added(&**ipfs.bitswap.store(), root, name).await?,
        };
        if bare {
            events.iter_mut().for_each(|e| e.name.clone_from(&e.hash));
        }
        events.iter().for_each(|e| body.extend(super::line(e)));
        provided.extend(
            events
                .iter()
                .rev()
                .filter_map(|e| Cid::try_from(e.hash.as_str()).ok()),
        );
    }
    // Each root is pinned (Kubo pins what it adds, `--pin=false` aside).
    for (_, root) in added.iter().filter(|_| options.pin && !options.only_hash) {
        ipfs.pins
            .add(*root, PinKind::Recursive, "")
            .map_err(Failure::of)?;
    }
    if !options.only_hash {
        super::providing::provide_added(ipfs, provided);
    }
    Ok(Reply::Ndjson(body))
}

/// Unpack the upload under `dir` and add it: each top-level entry, or `dir` itself with `-w`.
/// Blocks go to the store, or to memory with `--only-hash`. Returns the (name, root) added.
fn build(
    dir: &Path,
    parts: &[Part],
    options: AddOptions,
    bare: bool,
    store: &crate::ipfs::BlockStore,
) -> Result<(Vec<(String, Cid)>, MemoryBlocks), Failure> {
    let roots: Vec<(String, PathBuf)> = match (bare, options.wrap) {
        (true, _) => {
            let path = dir.join(BARE_NAME);
            std::fs::write(&path, &parts[0].data).map_err(Failure::of)?;
            vec![(String::new(), path)]
        }
        (false, true) => {
            unpack(dir, parts)?;
            vec![(String::new(), dir.to_owned())]
        }
        (false, false) => (unpack(dir, parts)?.into_iter())
            .map(|t| (t.clone(), dir.join(t)))
            .collect(),
    };
    let mut memory = MemoryBlocks::default();
    let mut added = Vec::new();
    for (name, path) in roots {
        let mut on_disk = store;
        let sink: &mut dyn BlockSink = match options.only_hash {
            true => &mut memory,
            false => &mut on_disk,
        };
        let mut sink = DynSink(sink);
        let built = unixfs::add_path_as(
            &path,
            &mut sink,
            &CONTENT_LIMITS,
            Hidden::Include,
            options.layout,
        );
        let root = built.map_err(Failure::of)?.root;
        added.push((name, root));
    }
    Ok((added, memory))
}

/// A `&mut dyn BlockSink` as a sized sink.
struct DynSink<'a>(&'a mut dyn BlockSink);

impl BlockSink for DynSink<'_> {
    fn put(&mut self, block: crate::ipfs::Block) -> Result<(), crate::ipfs::SinkError> {
        self.0.put(block)
    }
}

/// Write the parts under `dir` (folders and files first, symlinks last, so no part is written
/// through a symlink another part made); returns the top-level names in upload order.
fn unpack(dir: &Path, parts: &[Part]) -> Result<Vec<String>, Failure> {
    let io = |path: &Path, e: std::io::Error| {
        Failure::normal(format!("unpacking {}: {e}", path.display()))
    };
    let mut tops: Vec<String> = Vec::new();
    for part in parts {
        let Some(top) = part.path.first() else {
            return Err(Failure::client("an uploaded part has no file name"));
        };
        if !tops.contains(top) {
            tops.push(top.clone());
        }
        let path = part.path.iter().fold(dir.to_owned(), |p, n| p.join(n));
        match part.kind {
            PartKind::Directory => std::fs::create_dir_all(&path).map_err(|e| io(&path, e))?,
            PartKind::File => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
                }
                std::fs::write(&path, &part.data).map_err(|e| io(&path, e))?;
            }
            PartKind::Symlink => {}
        }
    }
    for part in parts.iter().filter(|p| p.kind == PartKind::Symlink) {
        let path = part.path.iter().fold(dir.to_owned(), |p, n| p.join(n));
        let target = std::str::from_utf8(&part.data)
            .map_err(|_| Failure::client("a symlink target is not UTF-8"))?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        std::os::unix::fs::symlink(target, &path).map_err(|e| io(&path, e))?;
    }
    Ok(tops)
}

/// Kubo's events for what was added below `root` (named `name`): files as they come, each
/// folder after its content, the root last.
async fn list_added<S: BlockSource>(
    source: &S,
    root: &Cid,
    name: &str,
) -> Result<Vec<AddEvent>, Failure> {
    let mut stack = vec![(*root, name.to_owned(), false)];
    let mut events = Vec::new();
    while let Some((cid, name, expanded)) = stack.pop() {
        let node = read_node(source, &cid).await?;
        let is_dir = matches!(node.kind, NodeKind::Directory | NodeKind::HamtShard);
        if expanded || !is_dir {
            let size = node.tsize.to_string();
            events.push(AddEvent {
                name,
                hash: cid.to_string(),
                size,
            });
            continue;
        }
        stack.push((cid, name.clone(), true));
        for (child, link) in entries(source, &cid).await?.into_iter().rev() {
            let path = if name.is_empty() {
                child
            } else {
                format!("{name}/{child}")
            };
            stack.push((link, path, false));
        }
        if stack.len() + events.len() > 2 * MAX_LS_LINKS {
            return Err(Failure::normal(format!("more than {MAX_LS_LINKS} entries")));
        }
    }
    Ok(events)
}

async fn read_node<S: BlockSource>(source: &S, cid: &Cid) -> Result<node::Node, Failure> {
    let block = source.get(cid).await.map_err(Failure::of)?;
    node::read(&block).map_err(|e| Failure::normal(format!("{cid}: {e}")))
}

/// The entries of the folder `cid` as Kubo lists them (link order, HAMT buckets flattened).
async fn entries<S: BlockSource>(source: &S, cid: &Cid) -> Result<Vec<(String, Cid)>, Failure> {
    unixfs::list_links(source, cid, MAX_LS_LINKS, Listing::AsLinked)
        .await
        .map_err(Failure::of)
}

/// A scratch folder under `<home>/tmp`, removed when dropped.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn new(base: &Path, what: &str) -> Result<Scratch, Failure> {
        let n = SCRATCH_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = base.join(format!("{what}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .map_err(|e| Failure::normal(format!("cannot create {}: {e}", path.display())))?;
        Ok(Scratch { path })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `cat`: the file's bytes, from `--offset`, at most `--length`, streamed as they are read.
pub async fn cat(ipfs: &Ipfs, call: &Call) -> Result<Reply, Failure> {
    let text = call.arg(0, "ipfs-path")?;
    let offset: u64 = call.number(&["offset", "o"], 0)?;
    let end = match call.option(&["length", "l"]) {
        None => u64::MAX,
        Some(_) => offset.saturating_add(call.number(&["length", "l"], 0)?),
    };
    let cid = ipfs.resolve(text).await?;
    let kind = read_node(&ipfs.source(), &cid).await?.kind;
    if matches!(kind, NodeKind::Directory | NodeKind::HamtShard) {
        return Err(Failure::normal("this dag node is a directory"));
    }
    Ok(Reply::Raw {
        content_type: "text/plain",
        chunks: stream_file(ipfs, cid, offset..end, Vec::new(), Vec::new()),
    })
}

/// The bytes of the file `cid` in `range` sent to the connection by a task of its own, block by
/// block (a window of [`unixfs::FILE_WINDOW_BLOCKS`] fetched ahead), `before` and `after` around
/// them (a tar header, and the tar's padding and end for `get`). A reader that stalls for
/// [`READER_STALL_TIMEOUT`] is dropped; a block that cannot be had ends the stream early.
fn stream_file(
    ipfs: &Ipfs,
    cid: Cid,
    range: std::ops::Range<u64>,
    before: Vec<u8>,
    after: Vec<u8>,
) -> mpsc::Receiver<Vec<u8>> {
    let (chunks, receiver) = mpsc::channel(FILE_QUEUE);
    let source = ipfs.source();
    ipfs.tracker.spawn(async move {
        let send = async |bytes: Vec<u8>| {
            bytes.is_empty()
                || chunks
                    .send_timeout(bytes, READER_STALL_TIMEOUT)
                    .await
                    .is_ok()
        };
        if !send(before).await {
            return;
        }
        let mut file = match unixfs::FileStream::open(&source, &cid, range).await {
            Ok(file) => file,
            Err(e) => return tracing::debug!(%cid, "Kubo RPC: the file stream ended early: {e}"),
        };
        loop {
            match file.next().await {
                Ok(Some(bytes)) => {
                    if !send(bytes).await {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    return tracing::debug!(%cid, "Kubo RPC: the file stream ended early: {e}");
                }
            }
        }
        send(after).await;
    });
    receiver
}

/// `get`: a tar of the file or folder, named by the path's last name (the CID for `/ipfs/<cid>`).
pub async fn get(ipfs: &Ipfs, call: &Call) -> Result<Reply, Failure> {
    let text = call.arg(0, "ipfs-path")?;
    if call.flag(&["compress", "C"])? {
        return Err(Failure::client(
            "constellation does not compress `get` (gzip): drop --compress",
        ));
    }
    let cid = ipfs.resolve(text).await?;
    let name = text
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let name = if name.is_empty() {
        cid.to_string()
    } else {
        name
    };
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let root = read_node(&ipfs.source(), &cid).await?;
    if !matches!(root.kind, NodeKind::Directory | NodeKind::HamtShard) {
        // One file: its tar entry streamed as `cat` streams, whatever its size.
        let header = super::tar::header(&name, super::tar::EntryKind::File, root.size, mtime)
            .map_err(Failure::client)?;
        let chunks = stream_file(
            ipfs,
            cid,
            0..u64::MAX,
            header.to_vec(),
            super::tar::end_after_file(root.size),
        );
        return Ok(Reply::Raw {
            content_type: "application/x-tar",
            chunks,
        });
    }
    let scratch = Scratch::new(&ipfs.scratch, "get")?;
    let target = scratch.path.join("content");
    unixfs::fetch_folder(&ipfs.source(), &cid, &target, &CONTENT_LIMITS)
        .await
        .map_err(Failure::of)?;
    let (chunks, receiver) = mpsc::channel(TAR_QUEUE);
    let runtime = tokio::runtime::Handle::current();
    ipfs.tracker.spawn_blocking(move || {
        let writer = ChannelWriter { chunks, runtime };
        let mut out = std::io::BufWriter::with_capacity(TAR_CHUNK_BYTES, writer);
        if let Err(e) = super::tar::write_tree(&mut out, &target, &name, mtime) {
            tracing::debug!("Kubo RPC get: the tar stream ended early: {e}");
        }
        drop(out);
        drop(scratch);
    });
    Ok(Reply::Raw {
        content_type: "application/x-tar",
        chunks: receiver,
    })
}

/// Bytes written here go to the connection; a reader that left, or that stalls for
/// [`READER_STALL_TIMEOUT`], fails the write.
struct ChannelWriter {
    chunks: mpsc::Sender<Vec<u8>>,
    runtime: tokio::runtime::Handle,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let send = self.chunks.send_timeout(buf.to_vec(), READER_STALL_TIMEOUT);
        self.runtime
            .block_on(send)
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One link of `ls`: Kubo's `LsLink` (no UnixFS mode/mtime here: zero, as Kubo without them).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct LsLink {
    name: String,
    hash: String,
    size: u64,
    #[serde(rename = "Type")]
    kind: u8,
    target: String,
    mode: u32,
    mod_time: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct LsObject {
    hash: String,
    links: Vec<LsLink>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct LsOutput {
    objects: Vec<LsObject>,
}

/// Go's zero `time.Time`, as Kubo prints a link without mtime.
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// `ls`: the links of each folder, with their types and sizes.
pub async fn ls(ipfs: &Ipfs, call: &Call) -> Result<Reply, Failure> {
    call.arg(0, "ipfs-path")?;
    let mut objects = Vec::new();
    for text in &call.args {
        let cid = ipfs.resolve(text).await?;
        let source = ipfs.source();
        let dir = read_node(&source, &cid).await?;
        let mut links = Vec::new();
        if matches!(dir.kind, NodeKind::Directory | NodeKind::HamtShard) {
            for (name, link) in entries(&source, &cid).await? {
                let child = read_node(&source, &link).await?;
                links.push(LsLink {
                    name,
                    hash: link.to_string(),
                    size: child.size,
                    kind: child.kind.code(),
                    target: child.target,
                    mode: 0,
                    mod_time: GO_ZERO_TIME,
                });
            }
        }
        objects.push(LsObject {
            hash: text.clone(),
            links,
        });
    }
    Ok(super::json(&LsOutput { objects }))
}
