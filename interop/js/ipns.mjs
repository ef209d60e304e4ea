// An independent IPNS implementation (npm `ipns`, js-libp2p keys) driven by one command per run,
// for constellation's interop tests; prints one JSON line on stdout ({"ok":false,...} on refusal).
//   keygen Ed25519|RSA                          -> {private_key (protobuf, base64), peer_id}
//   peerid KEY                                  -> {peer_id} of a private key (protobuf, base64)
//   sign KEY VALUE SEQ EXPIRATION_RFC3339 [v2]  -> {record (base64)}; v2: no V1 fields
//   validate PEER_ID RECORD                     -> {value, sequence, validity, ttl_ns} or refusal
//   select PEER_ID RECORD...                    -> {best: index}
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import {
  createIPNSRecordWithExpiration, marshalIPNSRecord, multihashToIPNSRoutingKey, unmarshalIPNSRecord
} from 'ipns'
import { ipnsSelector } from 'ipns/selector'
import { ipnsValidator } from 'ipns/validator'

const b64 = (bytes) => Buffer.from(bytes).toString('base64')
const unb64 = (text) => new Uint8Array(Buffer.from(text, 'base64'))
const routingKey = (peerId) => multihashToIPNSRoutingKey(peerIdFromString(peerId).toMultihash())

async function run ([cmd, ...args]) {
  if (cmd === 'keygen') {
    const key = args[0] === 'RSA' ? await generateKeyPair('RSA', 2048) : await generateKeyPair('Ed25519')
    return { private_key: b64(privateKeyToProtobuf(key)), peer_id: peerIdFromPrivateKey(key).toString() }
  }
  if (cmd === 'peerid') {
    return { peer_id: peerIdFromPrivateKey(privateKeyFromProtobuf(unb64(args[0]))).toString() }
  }
  if (cmd === 'sign') {
    const [key, value, seq, expiration, mode] = args
    const options = { v1Compatible: mode !== 'v2', ttlNs: 30n * 60n * 1000000000n }
    const record = await createIPNSRecordWithExpiration(
      privateKeyFromProtobuf(unb64(key)), value, BigInt(seq), expiration, options)
    return { record: b64(marshalIPNSRecord(record)) }
  }
  if (cmd === 'validate') {
    const [peerId, record] = args
    await ipnsValidator(routingKey(peerId), unb64(record))
    const parsed = unmarshalIPNSRecord(unb64(record))
    return {
      value: parsed.value, sequence: parsed.sequence.toString(),
      validity: parsed.validity, ttl_ns: parsed.ttl.toString()
    }
  }
  if (cmd === 'select') {
    const [peerId, ...records] = args
    return { best: ipnsSelector(routingKey(peerId), records.map(unb64)) }
  }
  throw new Error(`unknown command ${cmd}`)
}

try {
  const reply = await run(process.argv.slice(2))
  console.log(JSON.stringify({ ok: true, ...reply }))
} catch (err) {
  console.log(JSON.stringify({ ok: false, error: `${err.name}: ${err.message}` }))
}
