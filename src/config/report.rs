//! `[report]`: where the sync reports are saved and the station name they show.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[report]`: where reports are saved.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportConfig {
    /// Default: `<home>/reports`.
    pub dir: Option<PathBuf>,
    /// Shown in the title (default: the machine's hostname).
    pub station: Option<String>,
}
