//! Mailing the report to the captain with lettre: SMTP (STARTTLS, implicit TLS, or plain for a
//! local relay) or the sendmail program. The caller logs a failure; it never fails a sync.

use std::time::Duration;

pub use crate::config::mail::{MailConfig, Security, Transport};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSendmailTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// How long an SMTP exchange may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

impl MailConfig {
    /// The recipient: `CAPTAINEMAIL`, else `[mail] to`.
    pub fn recipient(&self) -> Option<String> {
        std::env::var("CAPTAINEMAIL")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .or_else(|| self.to.clone())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("no recipient: set CAPTAINEMAIL or [mail] to")]
    NoRecipient,
    #[error("bad address {0:?}: {1}")]
    Address(String, String),
    #[error("cannot build the message: {0}")]
    Build(String),
    #[error("SMTP {host}:{port}: {reason}")]
    Smtp {
        host: String,
        port: u16,
        reason: String,
    },
    #[error("sendmail: {0}")]
    Sendmail(String),
}

/// Send one report (HTML with its plain-text alternative).
pub async fn send(
    config: &MailConfig,
    subject: &str,
    text: String,
    html: String,
) -> Result<String, MailError> {
    let to = config.recipient().ok_or(MailError::NoRecipient)?;
    let mailbox = |s: &str| {
        s.parse::<Mailbox>()
            .map_err(|e| MailError::Address(s.to_owned(), e.to_string()))
    };
    let message = Message::builder()
        .from(mailbox(&config.from)?)
        .to(mailbox(&to)?)
        .subject(subject)
        .multipart(MultiPart::alternative_plain_html(text, html))
        .map_err(|e| MailError::Build(e.to_string()))?;
    match config.transport {
        Transport::Sendmail => {
            let transport = match &config.sendmail {
                Some(cmd) => AsyncSendmailTransport::<Tokio1Executor>::new_with_command(cmd),
                None => AsyncSendmailTransport::<Tokio1Executor>::new(),
            };
            transport
                .send(message)
                .await
                .map_err(|e| MailError::Sendmail(e.to_string()))?;
        }
        Transport::Smtp => {
            let port = config.port.unwrap_or(match config.security {
                Security::Starttls => 587,
                Security::Tls => 465,
                Security::None => 25,
            });
            let smtp_err = |reason: String| MailError::Smtp {
                host: config.host.clone(),
                port,
                reason,
            };
            let tls = match config.security {
                Security::None => Tls::None,
                Security::Starttls | Security::Tls => {
                    let params = TlsParameters::new(config.host.clone())
                        .map_err(|e| smtp_err(e.to_string()))?;
                    if config.security == Security::Tls {
                        Tls::Wrapper(params)
                    } else {
                        Tls::Required(params)
                    }
                }
            };
            let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
                .port(port)
                .tls(tls)
                .timeout(Some(SMTP_TIMEOUT));
            if let (Some(user), Some(password)) = (&config.user, &config.password) {
                builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
            }
            builder
                .build()
                .send(message)
                .await
                .map_err(|e| smtp_err(e.to_string()))?;
        }
    }
    Ok(to)
}
