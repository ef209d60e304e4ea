//! The service name (`<slug>` of `/x/<slug>-<peer id>` and `x_<slug>.sh`) as a checked type, and
//! the parse of a service's protocol name.

use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use super::error::DragonError;

/// Longest slug accepted (`/x/<slug>-<peer id>` must stay well under the protocol-name limit).
const MAX_SLUG_LEN: usize = 64;

/// A service name: `[a-z0-9._-]{1,64}`, the `<slug>` of `/x/<slug>-<peer id>` and `x_<slug>.sh`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Slug(String);

impl Slug {
    pub fn parse(text: &str) -> Result<Slug, DragonError> {
        let ok = !text.is_empty()
            && text.len() <= MAX_SLUG_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && !text.starts_with(['-', '.']);
        if ok {
            Ok(Slug(text.to_owned()))
        } else {
            Err(DragonError::BadSlug(crate::identity::shorten(text)))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// `/x/<slug>-<peer id>`.
    pub fn protocol(&self, peer: &PeerId) -> String {
        format!("/x/{}-{peer}", self.0)
    }
}

impl std::fmt::Display for Slug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&self.0)
    }
}

impl TryFrom<String> for Slug {
    type Error = DragonError;
    fn try_from(value: String) -> Result<Slug, DragonError> {
        Slug::parse(&value)
    }
}

impl From<Slug> for String {
    fn from(slug: Slug) -> String {
        slug.0
    }
}

/// `/x/<slug>-<peer id>` → (slug, peer), when the name has that shape.
pub fn parse_service_protocol(protocol: &str) -> Option<(Slug, PeerId)> {
    let rest = protocol.strip_prefix("/x/")?;
    let (slug, peer) = rest.rsplit_once('-')?;
    Some((
        Slug::parse(slug).ok()?,
        crate::identity::parse_peer_id(peer).ok()?,
    ))
}
