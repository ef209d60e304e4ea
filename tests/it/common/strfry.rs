//! A real strfry (the relay Astroport stations run) for tests: `../shared/peers/strfry/strfry`,
//! or `$CONSTELLATION_STRFRY`. Missing, it fails the test with a message; it never skips.

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use nostr::prelude::*;

use crate::common::net::free_port;
use crate::common::wait_until;

/// strfry opens its LMDB and its websocket port in well under a second; margin for CI.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The strfry binary.
pub fn binary() -> PathBuf {
    let path = std::env::var_os("CONSTELLATION_STRFRY")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/peers/strfry/strfry")
        });
    assert!(
        path.is_file(),
        "no strfry at {} (set CONSTELLATION_STRFRY; ../shared/peers/strfry/README.md says how it \
         was built; it needs Debian's liblmdb0 and libsecp256k1-1, which ./test installs)",
        path.display()
    );
    path
}

/// `strfry relay` on 127.0.0.1 with its own LMDB in a temp folder; killed on drop.
pub struct Strfry {
    pub url: String,
    pub port: u16,
    config: PathBuf,
    dir: tempfile::TempDir,
    child: Child,
}

impl Strfry {
    pub fn start() -> Strfry {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("db");
        std::fs::create_dir_all(&db).expect("db folder");
        let port = free_port();
        let config = dir.path().join("strfry.conf");
        // `nofiles = 0`: leave the fd limit alone (the machine's hard limit is below strfry's
        // default). Events up to 3 years old are accepted by default, the tests' are younger.
        let text = format!(
            "db = \"{}/\"\nrelay {{\n    bind = \"127.0.0.1\"\n    port = {port}\n    nofiles = 0\n}}\n",
            db.display()
        );
        std::fs::write(&config, text).expect("strfry.conf");
        let log = std::fs::File::create(dir.path().join("strfry.log")).expect("log");
        let child = Command::new(binary())
            .arg("--config")
            .arg(&config)
            .arg("relay")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn strfry");
        let strfry = Strfry {
            url: format!("ws://127.0.0.1:{port}"),
            port,
            config,
            dir,
            child,
        };
        let up = wait_until(START_TIMEOUT, || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "strfry did not listen on {port}:\n{}", strfry.log());
        strfry
    }

    /// Its folder: `strfry.conf`, `db/`, `strfry.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("strfry.log")).unwrap_or_default()
    }

    /// `strfry --config … <args>`, with `stdin` fed in.
    pub fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut command = Command::new(binary());
        command.arg("--config").arg(&self.config).args(args);
        crate::common::run_with_stdin(&mut command, stdin)
    }

    /// The command line of `strfry import` on this relay's database (for `--import-command`).
    pub fn import_command(&self) -> String {
        format!(
            "'{}' --config '{}' import",
            binary().display(),
            self.config.display()
        )
    }

    /// Every stored event, as `strfry export` prints it (one JSON object per line).
    pub fn export(&self) -> Vec<String> {
        let out = self.run(&["export"], b"");
        assert!(out.status.success(), "strfry export: {}", stderr(&out));
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub fn stored_ids(&self) -> BTreeSet<EventId> {
        self.export()
            .iter()
            .map(|line| Event::from_json(line).expect("strfry exports events").id)
            .collect()
    }
}

impl Drop for Strfry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
