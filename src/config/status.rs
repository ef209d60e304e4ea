//! `[status]`: the status page's address, with its default.

use serde::{Deserialize, Serialize};

/// `[status]`: where the daemon serves its status page (loopback: it shows the station's state).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatusConfig {
    pub listen: String,
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig {
            listen: "127.0.0.1:7778".into(),
        }
    }
}
