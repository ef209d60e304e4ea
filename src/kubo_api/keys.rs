//! `key list|gen|import|rm|rename` over the keystore, and `name publish|resolve` over our
//! [`Names`](crate::node::names::Names) and the DHT; key ids printed in Kubo's `--ipns-base`.

use std::time::Duration;

use libp2p::PeerId;
use serde::Serialize;

use super::call::Call;
use super::ipfs::Ipfs;
use super::{Failure, Reply};
use crate::ipfs::ipns;
use crate::ipfs::keystore::{ImportFormat, KeyType};

/// Kubo's `name publish` defaults (boxo `ipns.DefaultRecordLifetime`, and the TTL its help
/// names).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(48 * 3600);
const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// Kubo's `KeyOutput`.
#[derive(Serialize)]
struct KeyOutput {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Id")]
    id: String,
}

#[derive(Serialize)]
struct KeyOutputList {
    #[serde(rename = "Keys")]
    keys: Vec<KeyOutput>,
}

/// Kubo's `KeyRenameOutput`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct KeyRenameOutput {
    was: String,
    now: String,
    #[serde(rename = "Id")]
    id: String,
    overwrite: bool,
}

/// Kubo's `IpnsEntry` and `ResolvedPath`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct IpnsEntry {
    name: String,
    value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ResolvedPath {
    path: String,
}

/// `--ipns-base` (default `base36`): `b58mh`/`v0` is the base58 PeerID, any other multibase name
/// the CIDv1 (`libp2p-key`) in it.
fn key_id(call: &Call, peer: &PeerId) -> Result<String, Failure> {
    let base = match call.option(&["ipns-base"]).unwrap_or("base36") {
        "b58mh" | "v0" => return Ok(peer.to_string()),
        "base36" | "k" => cid::multibase::Base::Base36Lower,
        "base32" | "b" => cid::multibase::Base::Base32Lower,
        "base58btc" | "z" => cid::multibase::Base::Base58Btc,
        "base16" | "f" => cid::multibase::Base::Base16Lower,
        other => {
            return Err(Failure::normal(format!(
                "unsupported multibase encoding: {other}"
            )));
        }
    };
    ipns::name_cid(peer)
        .to_string_of_base(base)
        .map_err(Failure::of)
}

fn key_output(call: &Call, name: &str, peer: &PeerId) -> Result<KeyOutput, Failure> {
    Ok(KeyOutput {
        name: name.to_owned(),
        id: key_id(call, peer)?,
    })
}

pub fn list(ipfs: &Ipfs, call: &Call) -> Result<Reply, Failure> {
    let keys = ipfs
        .keystore
        .list()
        .map_err(|e| Failure::normal(format!("listing keys failed: {e}")))?;
    let keys = (keys.iter())
        .map(|k| key_output(call, &k.name, &k.peer))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(super::json(&KeyOutputList { keys }))
}

pub async fn generate(ipfs: &Ipfs, call: &Call) -> Result<Reply, Failure> {
    let name = call.arg(0, "name")?;
    let size = match call.option(&["size", "s"]) {
        Some(_) => Some(call.number(&["size", "s"], 0usize)?),
        None => None,
    };
    let kind = KeyType::parse(call.option(&["type", "t"]).unwrap_or("ed25519"), size)
        .map_err(Failure::of)?;
    // An RSA key takes a second or more to generate: off the async threads.
    let keystore = ipfs.keystore.clone();
    let owned = name.to_owned();
    let peer = tokio::task::spawn_blocking(move || keystore.generate(&owned, kind))
        .await
        .map_err(|e| Failure::normal(format!("key gen stopped: {e}")))?
        .map_err(Failure::of)?;
    Ok(super::json(&key_output(call, name, &peer)?))
}

/// `key import NAME` with the key file as the multipart body's one part.
pub fn import(ipfs: &Ipfs, call: &Call) -> Result<Reply, Failure> {
    let name = call.arg(0, "name")?;
    let format = call
        .option(&["format", "f"])
        .unwrap_or("libp2p-protobuf-cleartext");
    let format = ImportFormat::parse(format).map_err(Failure::of)?;
    let boundary = super::multipart::boundary(call.content_type.as_deref().unwrap_or(""))
        .map_err(|_| Failure::client("argument \"key\" is required"))?;
    let parts = super::multipart::parse(&call.body, &boundary).map_err(Failure::client)?;
    let part = parts
        .first()
        .ok_or_else(|| Failure::client("argument \"key\" is required"))?;
    let peer = ipfs
        .keystore
        .import(name, format, &part.data)
        .map_err(Failure::of)?;
    Ok(super::json(&key_output(call, name, &peer)?))
}

pub fn rm(ipfs: &Ipfs, call: &Call) -> Result<Reply, Failure> {
    call.arg(0, "name")?;
    let mut keys = Vec::new();
    for name in &call.args {
        let peer = ipfs.keystore.remove(name).map_err(Failure::of)?;
        keys.push(key_output(call, name, &peer)?);
    }
    Ok(super::json(&KeyOutputList { keys }))
}

pub fn rename(ipfs: &Ipfs, call: &Call) -> Result<Reply, Failure> {
    let (old, new) = (call.arg(0, "name")?, call.arg(1, "newName")?);
    let force = call.flag(&["force", "f"])?;
    let (peer, overwrite) = ipfs.keystore.rename(old, new, force).map_err(Failure::of)?;
    Ok(super::json(&KeyRenameOutput {
        was: old.to_owned(),
        now: new.to_owned(),
        id: key_id(call, &peer)?,
        overwrite,
    }))
}

/// `name publish PATH [--key] [--lifetime] [--ttl] [--allow-offline] [--resolve]`.
pub async fn publish(ipfs: &Ipfs, call: &Call) -> Result<Reply, Failure> {
    let path = call.arg(0, "ipfs-path")?;
    let value = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/ipfs/{path}")
    };
    let key = ipfs
        .keystore
        .find(call.option(&["key", "k"]).unwrap_or("self"))
        .map_err(Failure::of)?;
    let lifetime = match call.option(&["lifetime", "t"]) {
        Some(text) => go_duration(text)
            .map_err(|e| Failure::normal(format!("error parsing lifetime option: {e}")))?,
        None => DEFAULT_LIFETIME,
    };
    if lifetime.is_zero() {
        return Err(Failure::normal(format!(
            "lifetime must be greater than zero, got {lifetime:?}"
        )));
    }
    let ttl = match call.option(&["ttl"]) {
        Some(text) => go_duration(text).map_err(Failure::normal)?,
        None => DEFAULT_TTL.min(lifetime),
    };
    if ttl > lifetime {
        return Err(Failure::normal("ttl must not be greater than lifetime"));
    }
    if call.flag_or(&["resolve"], true)? {
        ipfs.resolve(&value).await?;
    }
    let published = ipfs
        .names
        .publish(&key, &value, lifetime, ttl)
        .await
        .map_err(Failure::of)?;
    if let Err(e) = &published.put
        && !call.flag(&["allow-offline"])?
    {
        return Err(Failure::normal(format!(
            "cannot publish the record to the DHT ({e}); it is kept and goes out with the next publication. Use --allow-offline to accept that"
        )));
    }
    let name = ipns::name_cid(&published.name)
        .to_string_of_base(cid::multibase::Base::Base36Lower)
        .map_err(Failure::of)?;
    Ok(super::json(&IpnsEntry { name, value }))
}

/// `name resolve [NAME]` (default: our own name): one hop, or until `/ipfs/` with `--recursive`.
pub async fn resolve(ipfs: &Ipfs, call: &Call) -> Result<Reply, Failure> {
    let me = ipfs.node.peer_id().to_string();
    let text = call.args.first().map_or(me.as_str(), String::as_str);
    let bare = text.strip_prefix("/ipns/").unwrap_or(text);
    let (head, tail) = bare.split_once('/').unwrap_or((bare, ""));
    let name = ipns::parse_name(head).map_err(Failure::normal)?;
    let record = ipfs.resolve_name(name).await?;
    let mut value = String::from_utf8(record.value().to_vec())
        .map_err(|_| Failure::normal("the IPNS record's value is not UTF-8"))?;
    if call.flag_or(&["recursive", "r"], true)? && value.starts_with("/ipns/") {
        value = format!("/ipfs/{}", ipfs.content_path(&value).await?.root);
    }
    if !tail.is_empty() {
        value = format!("{}/{tail}", value.trim_end_matches('/'));
    }
    Ok(super::json(&ResolvedPath { path: value }))
}

/// Go's `time.ParseDuration` (`300s`, `1.5h`, `2h45m`, `24h`), plus Kubo's `d` for days.
pub fn go_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("time: invalid duration {text:?}");
    let mut rest = text.trim();
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(bad()),
        };
        total += number * scale;
        rest = &rest[unit..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_go_does() {
        assert_eq!(go_duration("24h"), Ok(Duration::from_secs(86400)));
        assert_eq!(go_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(go_duration("2h45m"), Ok(Duration::from_secs(9900)));
        assert_eq!(go_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(go_duration("300ms"), Ok(Duration::from_millis(300)));
        assert!(go_duration("12").is_err());
        assert!(go_duration("h").is_err());
        assert!(go_duration("5x").is_err());
    }
}
