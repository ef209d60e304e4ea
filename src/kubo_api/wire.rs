//! Kubo's RPC output types, field for field as Kubo's `core/commands/*.go` marshal them (Go's
//! nil slices are `null`), its error body, and Go's duration text. Pure types, no sockets.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// Kubo's `RepoVersion` for the repos of the release this API follows (`version`, `repo stat`).
pub const KUBO_REPO_VERSION: &str = "18";

/// `ipfs id`: Kubo's `IdOutput` (Kubo stopped reporting `ProtocolVersion` in 0.22).
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct IdOutput {
    #[serde(rename = "ID")]
    pub id: String,
    pub public_key: String,
    pub addresses: Option<Vec<String>>,
    pub agent_version: String,
    pub protocols: Option<Vec<String>>,
}

/// `ipfs version`: Kubo's `VersionInfo`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VersionOutput {
    pub version: String,
    pub commit: String,
    pub repo: String,
    pub system: String,
    pub golang: String,
}

/// One stream of a connection in `swarm peers --streams`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamProtocol {
    pub protocol: String,
}

/// One connection of `swarm peers`: Kubo's `connInfo` (`omitempty` fields left out when empty;
/// `Direction` is go-libp2p's number: 1 inbound, 2 outbound).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConnInfo {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub addr: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub peer: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub latency: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub muxer: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub direction: u8,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<StreamProtocol>,
    pub identify: IdOutput,
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

/// `swarm peers`: Kubo's `connInfos`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConnInfos {
    pub peers: Option<Vec<ConnInfo>>,
}

/// `swarm connect` (and other commands answering lines): Kubo's `stringList`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StringList {
    pub strings: Option<Vec<String>>,
}

/// `swarm addrs`: Kubo's `addrMap`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AddrMap {
    pub addrs: BTreeMap<String, Vec<String>>,
}

/// One line of `ping`: Kubo's `PingResult` (`Time` in nanoseconds, as Go's `time.Duration`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PingResult {
    pub success: bool,
    pub time: u64,
    pub text: String,
}

impl PingResult {
    pub fn text(success: bool, text: String) -> PingResult {
        PingResult {
            success,
            time: 0,
            text,
        }
    }
}

/// A peer and its addresses: go-libp2p's `peer.AddrInfo` JSON.
#[derive(Debug, Serialize)]
pub struct AddrInfo {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Addrs")]
    pub addrs: Vec<String>,
}

/// go-libp2p's `routing.QueryEventType` values used here.
pub const QUERY_FINAL_PEER: u8 = 2;
pub const QUERY_ERROR: u8 = 3;

/// One line of `routing findpeer`: go-libp2p's `routing.QueryEvent`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct QueryEvent {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Type")]
    pub kind: u8,
    pub responses: Option<Vec<AddrInfo>>,
    pub extra: String,
}

/// `p2p ls`: Kubo's `P2PLsOutput`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct P2pLsOutput {
    pub listeners: Option<Vec<ListenerInfo>>,
}

/// Kubo's `P2PListenerInfoOutput`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListenerInfo {
    pub protocol: String,
    pub listen_address: String,
    pub target_address: String,
}

/// `p2p stream ls`: Kubo's `P2PStreamsOutput`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct P2pStreamsOutput {
    pub streams: Option<Vec<StreamInfoOutput>>,
}

/// Kubo's `P2PStreamInfoOutput`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamInfoOutput {
    #[serde(rename = "HandlerID")]
    pub handler_id: String,
    pub protocol: String,
    pub origin_address: String,
    pub target_address: String,
}

/// go-ipfs-cmds' error codes: `ErrNormal` answers 500, `ErrClient` 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    Normal = 0,
    Client = 1,
}

/// go-ipfs-cmds' error body: `{"Message","Code","Type":"error"}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorBody<'a> {
    pub message: &'a str,
    pub code: u8,
    #[serde(rename = "Type")]
    pub kind: &'static str,
}

/// An empty list is Go's nil slice: `null`.
pub fn nil_if_empty<T>(list: Vec<T>) -> Option<Vec<T>> {
    (!list.is_empty()).then_some(list)
}

/// Go's `time.Duration.String()`: `350µs`, `1.234567ms`, `2.5s`, `1m30s`.
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    let unit = |value: u128, scale: u128, suffix: &str| {
        let whole = value / scale;
        let fraction = value % scale;
        if fraction == 0 {
            return format!("{whole}{suffix}");
        }
        let digits = scale.ilog10() as usize;
        let text = format!("{fraction:0digits$}");
        format!("{whole}.{}{suffix}", text.trim_end_matches('0'))
    };
    match nanos {
        0 => "0s".into(),
        n if n < 1_000 => format!("{n}ns"),
        n if n < 1_000_000 => unit(n, 1_000, "µs"),
        n if n < 1_000_000_000 => unit(n, 1_000_000, "ms"),
        n if n < 60_000_000_000 => unit(n, 1_000_000_000, "s"),
        n => {
            let secs = n / 1_000_000_000;
            let (hours, minutes) = (secs / 3600, (secs % 3600) / 60);
            let rest = unit(n % 60_000_000_000, 1_000_000_000, "s");
            if hours > 0 {
                format!("{hours}h{minutes}m{rest}")
            } else {
                format!("{minutes}m{rest}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_go_prints_them() {
        assert_eq!(go_duration(Duration::from_nanos(0)), "0s");
        assert_eq!(go_duration(Duration::from_nanos(999)), "999ns");
        assert_eq!(go_duration(Duration::from_micros(350)), "350µs");
        assert_eq!(go_duration(Duration::from_nanos(1_234_567)), "1.234567ms");
        assert_eq!(go_duration(Duration::from_millis(2500)), "2.5s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3723)), "1h2m3s");
    }

    #[test]
    fn shapes_match_kubo_field_for_field() {
        let id = serde_json::to_value(IdOutput::default()).unwrap();
        assert_eq!(
            id,
            serde_json::json!({"ID": "", "PublicKey": "", "Addresses": null,
                "AgentVersion": "", "Protocols": null})
        );
        let ls = serde_json::to_value(P2pLsOutput { listeners: None }).unwrap();
        assert_eq!(ls, serde_json::json!({"Listeners": null}));
        let conn = ConnInfo {
            addr: "/ip4/127.0.0.1/tcp/1".into(),
            peer: "12D3".into(),
            latency: String::new(),
            muxer: String::new(),
            direction: 0,
            streams: Vec::new(),
            identify: IdOutput::default(),
        };
        let keys: Vec<String> = serde_json::to_value(conn)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, ["Addr", "Identify", "Peer"]);
        let error = ErrorBody {
            message: "m",
            code: 1,
            kind: "error",
        };
        assert_eq!(
            serde_json::to_string(&error).unwrap(),
            r#"{"Message":"m","Code":1,"Type":"error"}"#
        );
    }
}
