//! `[mail]`: how the report reaches the captain (SMTP or sendmail), with its defaults.

use serde::{Deserialize, Serialize};

/// `[mail]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    /// Recipient; `CAPTAINEMAIL` from the environment wins. None: no mail.
    pub to: Option<String>,
    pub from: String,
    /// `smtp` or `sendmail`.
    pub transport: Transport,
    pub host: String,
    pub port: Option<u16>,
    /// `starttls` (port 587), `tls` (implicit, 465) or `none` (a relay on this machine, 25).
    pub security: Security,
    pub user: Option<String>,
    pub password: Option<String>,
    /// The sendmail program (default: `sendmail` on PATH).
    pub sendmail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Smtp,
    Sendmail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    Starttls,
    Tls,
    None,
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            to: None,
            from: "constellation@localhost".into(),
            transport: Transport::Smtp,
            host: "localhost".into(),
            port: None,
            security: Security::None,
            user: None,
            password: None,
            sendmail: None,
        }
    }
}
