//! Fuzz targets for the files a station reads: `12345.json`, `swarm.key`, Kubo's `config`,
//! `IA/modules.list`, `.env`, `sshd_config` and our `config.toml`.

use base64::Engine as _;
use constellation::config::Config;
use constellation::dragon::catalog::{parse_modules_list, private_in_env_file, sshd_port_in};
use constellation::identity::{import_kubo, parse_swarm_key};
use constellation::sync::discovery::{Endpoint, MAX_STATION_FILE, scan_swarm};
use libp2p::identity::Keypair;
use proptest::prelude::*;

use crate::harness::{
    CI_CASES, fuzz, inputs, json_inputs, peak_during, short_error, texts, within,
};

/// Longest error message: a sentence, a path, and at most two quotes of 80 characters of the
/// input, which `{:?}` may escape to 10 bytes each (`\u{10ffff}`). Bounded, whatever the input.
const ERROR_MAX: usize = 2_000;

const STATION: &str = r#"{"version":"0.4","created":"20261201120000","date":"2026-12-01",
"hostname":"pi4.local","myIP":"192.168.1.20","ipfsnodeid":"12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
"astroport":"http://127.0.0.1:12345","g1swarm":"/ipns/k51qzi5uqu5dl","captain":"captain@example.org",
"captainHEX":"6f1c5b6d2e0f8a9b7c3d4e5f60718293a4b5c6d7e8f9012345678901234567890a",
"NODEHEX":"a1b2c3d4e5f60718293a4b5c6d7e8f90123456789012345678901234567890ab",
"myRELAY":"ws://127.0.0.1:7777","uSPOT":"http://127.0.0.1:54321","PAF":"14","NCARD":"1","ZCARD":"4"}"#;
const STATION_VOCABULARY: &[&str] = &[
    "ipfsnodeid",
    "myRELAY",
    "captainHEX",
    "NODEHEX",
    "hostname",
    "g1swarm",
    "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
    "ws://127.0.0.1:7777",
    "wss://relay.copylaradio.com",
    "6f1c5b6d2e0f8a9b7c3d4e5f60718293a4b5c6d7e8f9012345678901234567890a",
];

#[test]
fn station_files_12345_json() {
    let dir = tempfile::tempdir().expect("tmp");
    let station = dir
        .path()
        .join("12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA");
    std::fs::create_dir_all(&station).expect("dir");
    let samples = [
        STATION.to_owned(),
        STATION.replace("ws://127.0.0.1:7777", "wss://relay.copylaradio.com"),
    ];
    fuzz(
        "12345.json",
        CI_CASES,
        (json_inputs(&samples, STATION_VOCABULARY), any::<bool>()),
        |(text, script)| {
            std::fs::write(station.join("12345.json"), &text).expect("write");
            let script_path = station.join("x_strfry.sh");
            if script {
                std::fs::write(&script_path, "#!/bin/sh\n").expect("x_strfry.sh")
            } else {
                let _ = std::fs::remove_file(&script_path);
            }
            let ((peers, skipped), peak) = peak_during(|| scan_swarm(dir.path(), None));
            prop_assert_eq!(peers.len() + skipped.len(), 1, "one file, one outcome");
            for s in &skipped {
                short_error("12345.json", &s.reason, ERROR_MAX)?;
            }
            for p in &peers {
                prop_assert!(p.name.parse::<libp2p::PeerId>().is_ok());
                prop_assert!(
                    script || !matches!(&p.endpoint, Endpoint::Tunnel(_)),
                    "a tunnel without x_strfry.sh"
                );
                prop_assert!(p.pubkeys.iter().all(|k| k.to_hex().len() == 64));
            }
            within(
                "12345.json",
                peak,
                4 * MAX_STATION_FILE as usize,
                text.len(),
            )
        },
    );
}

const SWARM_KEYS: &[&str] = &[
    "/key/swarm/psk/1.0.0/\n/base16/\n0000000000000000000000000000000000000000000000000000000000000000\n",
    "/key/swarm/psk/1.0.0/\n/base64/\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
    "/key/swarm/psk/1.0.0/\r\n/base16/\r\n9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
];

#[test]
fn swarm_keys() {
    let samples = SWARM_KEYS.iter().map(|s| s.as_bytes().to_vec()).collect();
    fuzz("swarm.key", CI_CASES, inputs(samples), |bytes| {
        let (parsed, peak) = peak_during(|| parse_swarm_key(&bytes));
        match parsed {
            Ok(_) => prop_assert!(
                bytes
                    .trim_ascii_start()
                    .starts_with(b"/key/swarm/psk/1.0.0/")
            ),
            Err(e) => short_error("swarm.key", &e, ERROR_MAX)?,
        }
        within("swarm.key", peak, 4 * bytes.len() + 4096, bytes.len())
    });
}

/// A Kubo `config` for a generated key, as Kubo writes it (the fields we read, and some others).
fn kubo_config(keypair: &Keypair) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .encode(keypair.to_protobuf_encoding().expect("encode"));
    serde_json::json!({
        "Identity": {"PeerID": keypair.public().to_peer_id().to_string(), "PrivKey": key},
        "Addresses": {"Swarm": ["/ip4/127.0.0.1/tcp/4001"], "API": "/ip4/127.0.0.1/tcp/5001"},
        "Bootstrap": [], "Experimental": {"Libp2pStreamMounting": true},
    })
    .to_string()
}

const KUBO_VOCABULARY: &[&str] = &[
    "Identity",
    "PeerID",
    "PrivKey",
    "Addresses",
    "Swarm",
    "Bootstrap",
    "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
    "CAESQA==",
    "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",
];

#[test]
fn kubo_configs() {
    let repo = tempfile::tempdir().expect("tmp");
    let samples = [
        kubo_config(&Keypair::generate_ed25519()),
        kubo_config(&Keypair::generate_ed25519()),
    ];
    fuzz(
        "kubo config",
        CI_CASES,
        json_inputs(&samples, KUBO_VOCABULARY),
        |text| {
            std::fs::write(repo.path().join("config"), &text).expect("write");
            match import_kubo(repo.path()) {
                // The key is taken only when it is the one declared.
                Ok(keypair) => {
                    let id = keypair.public().to_peer_id().to_string();
                    prop_assert!(text.contains(&id), "{} is not declared", id);
                }
                Err(e) => short_error("kubo config", &e.to_string(), ERROR_MAX)?,
            }
            Ok(())
        },
    );
}

/// Bytes a skipped modules.list line may cost: its warning (a shortened quote) and its slot.
const WARNING_COST: usize = 512;

const MODULES_LIST: &str = "# name|port|check|group|label\nollama|11434|auto|ia|Ollama\n\
comfyui|8188|docker:comfyui|ia|ComfyUI\nvane|3002|pgrep:vane|ia|Vane\n\
qdrant|6333|dockerimg:qdrant/qdrant|db|Qdrant\nwebtop|3001|systemctl:webtop|desk|Webtop\n\
notes|-|auto|misc|No port\n";

#[test]
fn modules_lists() {
    fuzz("modules.list", CI_CASES, texts(&[MODULES_LIST]), |text| {
        let ((services, warnings), peak) =
            peak_during(|| parse_modules_list("IA/modules.list", &text));
        prop_assert!(services.len() + warnings.len() <= text.lines().count());
        for w in &warnings {
            short_error("modules.list", w, ERROR_MAX)?;
        }
        for s in &services {
            prop_assert!(s.port != Some(0), "port 0 published: {:?}", s);
        }
        // The services and one warning (shortened quotes) per line: linear in the input.
        let bound = 4 * text.len() + WARNING_COST * text.lines().count() + 64 * 1024;
        within("modules.list", peak, bound, text.len())
    });
}

const ENV_FILE: &str = "# station settings\nCAPTAINEMAIL=captain@example.org\n\
export DRAGON_PRIVATE_SERVICES=\"ollama comfyui\"\nUPLANETNAME='EnfinLibre'\n\
DRAGON_PRIVATE_SERVICES='ssh'\n";

#[test]
fn env_files() {
    fuzz(".env", CI_CASES, texts(&[ENV_FILE]), |text| {
        if let Some(value) = private_in_env_file(&text) {
            prop_assert!(
                text.contains(&value),
                "the value {value:?} is not in the file"
            );
        }
        Ok(())
    });
}

const SSHD_CONFIG: &str = "# sshd_config\nInclude /etc/ssh/sshd_config.d/*.conf\n#Port 22\n\
Port 2222\nPermitRootLogin no\nPasswordAuthentication no\nListenAddress 0.0.0.0\n";

#[test]
fn sshd_configs() {
    fuzz(
        "sshd_config",
        CI_CASES,
        texts(&[SSHD_CONFIG, "port=22\n", "Port\t 2022 # comment\n"]),
        |text| {
            match sshd_port_in(&text) {
                Ok(Some(port)) => prop_assert!(port != 0),
                Ok(None) => {}
                Err(e) => short_error("sshd_config", &e, ERROR_MAX)?,
            }
            Ok(())
        },
    );
}

const CONFIG_TOML: &str = r#"[node]
listen = ["/ip4/127.0.0.1/tcp/4001"]
bootstrap = []
peering = []
[node.limits]
max_connections = 512
max_streams_per_peer = 256
[[tunnels]]
kind = "listen"
protocol = "/x/ssh-12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
target = "/ip4/127.0.0.1/tcp/22"
allow_peers = ["12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"]
[relay]
listen = "127.0.0.1:7777"
max_limit = 500
max_pending_outbound_bytes = 4194304
limit_loopback = false
[status]
listen = "127.0.0.1:7778"
[dragon]
private = ["ollama"]
"#;

#[test]
fn config_toml() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("config.toml");
    fuzz("config.toml", CI_CASES, texts(&[CONFIG_TOML]), |text| {
        std::fs::write(&path, &text).expect("write");
        // The operator's own file: the error quotes TOML's message whole (it names the key).
        if let Err(e) = Config::load(&path) {
            prop_assert!(e.to_string().contains("config.toml"), "{}", e);
        }
        Ok(())
    });
}
