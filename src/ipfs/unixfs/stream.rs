//! One UnixFS file read as a stream of its bytes, from an offset and for a length, with a
//! bounded window of blocks fetched ahead (`ipfs cat` of any size); or one small file whole.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;

use cid::Cid;
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use rust_unixfs::file::FileReadFailed;
use rust_unixfs::file::visit::{FileVisit, IdleFileVisit};

use super::read::{ReadError, checked, malformed, resolve_path};
use crate::ipfs::block::{Block, BlockSource, RAW, SourceError};

/// Blocks fetched ahead of the reader, the one being read included. Eight 256 KiB chunks keep
/// a peer on a LAN busy while the client reads; the memory a stream holds is at most this many
/// blocks (each at most `MAX_BLOCK_BYTES`), whatever the file's size.
pub const FILE_WINDOW_BLOCKS: usize = 8;
/// Links waiting to be read in one file. Kubo's balanced tree keeps at most 174 per level
/// pending (under a thousand for a 10 GiB file); one node linking a whole block of leaves holds
/// about 50,000. A hostile DAG that nests more is refused here rather than grown in memory.
const MAX_PENDING_LINKS: usize = 65_536;

/// The bytes of one file, in order, from a start offset to an end (both clamped to the file).
pub struct FileStream<'a, S> {
    source: &'a S,
    root: Cid,
    size: u64,
    /// The root's own bytes (a file of one block), handed out first.
    first: Option<Vec<u8>>,
    visit: Option<FileVisit>,
    window: Window<'a>,
}

impl<'a, S: BlockSource + Sync> FileStream<'a, S> {
    /// Start reading the file `cid` for the bytes in `range`. A folder or symlink is refused.
    pub async fn open(source: &'a S, cid: &Cid, range: Range<u64>) -> Result<Self, ReadError> {
        let block = checked(source, cid).await?;
        let idle = IdleFileVisit::default().with_target_range(range);
        let (bytes, size, _, visit) = if cid.codec() == RAW {
            idle.start_from_raw(block.data())
        } else {
            idle.start(block.data()).map_err(|e| match e {
                FileReadFailed::UnexpectedType(_) => {
                    ReadError::NotFound(format!("{cid} (not a file)"))
                }
                other => malformed(*cid, other),
            })?
        };
        Ok(FileStream {
            source,
            root: *cid,
            size,
            first: (!bytes.is_empty()).then(|| bytes.to_vec()),
            visit,
            window: Window::default(),
        })
    }

    /// The whole file's size in bytes, as its root says.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The next bytes of the range, `None` at its end. After an error the stream is over.
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, ReadError> {
        if let Some(first) = self.first.take() {
            return Ok(Some(first));
        }
        while let Some(visit) = self.visit.take() {
            let (next, ahead) = visit.pending_links();
            if ahead.size_hint().0 >= MAX_PENDING_LINKS {
                return Err(ReadError::Limit {
                    path: self.root.to_string(),
                    what: "pending links",
                    bound: MAX_PENDING_LINKS as u64,
                });
            }
            let next = *next;
            let ahead: Vec<Cid> = ahead.take(FILE_WINDOW_BLOCKS - 1).copied().collect();
            for cid in std::iter::once(&next).chain(&ahead) {
                self.window.ask(self.source, *cid);
            }
            let block = self.window.take(self.source, next).await?;
            let (bytes, visit) = visit
                .continue_walk(block.data(), &mut None)
                .map_err(|e| malformed(next, e))?;
            self.visit = visit;
            if !bytes.is_empty() {
                return Ok(Some(bytes.to_vec()));
            }
        }
        Ok(None)
    }
}

/// The bytes of the file at `path` (`a/b.txt`) below the folder `root`, at most `max_bytes`:
/// `ipfs cat /ipfs/<root>/<path>` held in memory. A larger file is refused, not cut.
pub async fn cat_file<S: BlockSource + Sync>(
    source: &S,
    root: &Cid,
    path: &str,
    max_bytes: u64,
) -> Result<Vec<u8>, ReadError> {
    let cid = resolve_path(source, root, path).await?;
    let too_large = || ReadError::Limit {
        path: path.to_owned(),
        what: "bytes",
        bound: max_bytes,
    };
    let mut file = FileStream::open(source, &cid, 0..u64::MAX)
        .await
        .map_err(|e| match e {
            ReadError::NotFound(_) => ReadError::NotFound(format!("{path} (not a file)")),
            other => other,
        })?;
    if file.size() > max_bytes {
        return Err(too_large());
    }
    let mut out = Vec::with_capacity(usize::try_from(file.size()).unwrap_or(0));
    while let Some(bytes) = file.next().await? {
        if (out.len() + bytes.len()) as u64 > max_bytes {
            return Err(too_large());
        }
        out.extend_from_slice(&bytes);
    }
    Ok(out)
}

type Fetch<'a> = Pin<Box<dyn Future<Output = (Cid, Result<Block, ReadError>)> + Send + 'a>>;

/// Fetches in flight and blocks fetched but not read yet; both hold only CIDs the stream's
/// next [`FILE_WINDOW_BLOCKS`] links name.
#[derive(Default)]
struct Window<'a> {
    inflight: FuturesUnordered<Fetch<'a>>,
    asked: HashSet<Cid>,
    ready: HashMap<Cid, Block>,
}

impl<'a> Window<'a> {
    fn ask<S: BlockSource + Sync>(&mut self, source: &'a S, cid: Cid) {
        if self.ready.contains_key(&cid) || !self.asked.insert(cid) {
            return;
        }
        self.inflight
            .push(Box::pin(async move { (cid, checked(source, &cid).await) }));
    }

    async fn take<S: BlockSource + Sync>(
        &mut self,
        source: &'a S,
        cid: Cid,
    ) -> Result<Block, ReadError> {
        if let Some(block) = self.ready.remove(&cid) {
            return Ok(block);
        }
        self.ask(source, cid);
        while let Some((got, result)) = self.inflight.next().await {
            self.asked.remove(&got);
            if got == cid {
                return result;
            }
            if let Ok(block) = result {
                self.ready.insert(got, block);
            }
        }
        Err(SourceError::Missing(cid).into())
    }
}
