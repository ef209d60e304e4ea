// An independent UnixFS importer (Helia's npm `ipfs-unixfs-importer`) set up as Kubo's `ipfs add`
// (balanced layout of 174 links, fixed-size chunks, HAMT past 256 KiB), for constellation's CID
// tests. One run: `add PATH CID_VERSION RAW_LEAVES CHUNK_BYTES WRAP` -> {"entries":[{path,cid}]}.
import { createReadStream, readdirSync, statSync } from 'node:fs'
import { basename, join } from 'node:path'
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'

// Every file and folder below `path`, named from its base name, folders before their content.
function * walk (path, name) {
  if (statSync(path).isDirectory()) {
    yield { path: name }
    for (const child of readdirSync(path).sort()) yield * walk(join(path, child), `${name}/${child}`)
  } else {
    yield { path: name, content: createReadStream(path) }
  }
}

// A blockstore that keeps nothing: only the CIDs are wanted.
const blockstore = { put: async (cid) => cid, has: async () => false }

async function run ([cmd, path, cidVersion, rawLeaves, chunkBytes, wrap]) {
  if (cmd !== 'add') throw new Error(`unknown command ${cmd}`)
  const options = {
    cidVersion: Number(cidVersion),
    rawLeaves: rawLeaves === 'true',
    chunker: fixedSize({ chunkSize: Number(chunkBytes) }),
    layout: balanced({ maxChildrenPerNode: 174 }),
    leafType: 'file',
    reduceSingleLeafToSelf: true,
    shardSplitThresholdBytes: 262144,
    wrapWithDirectory: wrap === 'true'
  }
  const entries = []
  for await (const entry of importer(walk(path, basename(path)), blockstore, options)) {
    entries.push({ path: entry.path, cid: entry.cid.toString() })
  }
  return { entries }
}

run(process.argv.slice(2)).then(
  (out) => console.log(JSON.stringify(out)),
  (e) => { console.log(JSON.stringify({ ok: false, error: String(e?.message ?? e) })); process.exitCode = 1 })
