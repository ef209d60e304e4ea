//! `[kubo_api]`: whether the daemon serves the Kubo RPC API and where (default: the Kubo repo's
//! `Addresses.API`, else Kubo's 127.0.0.1:5001).

use serde::{Deserialize, Serialize};

/// `enabled = "auto" | true | false`: auto serves the API when a Kubo repo is used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum KuboApiEnabled {
    #[default]
    #[serde(with = "auto")]
    Auto,
    Set(bool),
}

/// The string `"auto"`, nothing else.
mod auto {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("auto")
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
        match String::deserialize(d)?.as_str() {
            "auto" => Ok(()),
            other => Err(serde::de::Error::custom(format!(
                "expected \"auto\", true or false, found {other:?}"
            ))),
        }
    }
}

/// `[kubo_api]`: the Kubo RPC API (`/api/v0/...`) for the station's `ipfs` commands.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KuboApiConfig {
    pub enabled: KuboApiEnabled,
    /// Multiaddr (`/ip4/127.0.0.1/tcp/5001`) or `host:port`; default: the repo's `Addresses.API`.
    pub listen: Option<String>,
}

impl KuboApiConfig {
    /// Is the API served, given whether a Kubo repo is in use?
    pub fn is_enabled(&self, with_kubo_repo: bool) -> bool {
        match self.enabled {
            KuboApiEnabled::Auto => with_kubo_repo,
            KuboApiEnabled::Set(on) => on,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enabled_takes_auto_or_a_boolean() {
        let parse = |t: &str| toml::from_str::<KuboApiConfig>(t).map(|c| c.enabled);
        assert_eq!(parse("").unwrap(), KuboApiEnabled::Auto);
        assert_eq!(parse("enabled = \"auto\"").unwrap(), KuboApiEnabled::Auto);
        assert_eq!(parse("enabled = true").unwrap(), KuboApiEnabled::Set(true));
        assert_eq!(
            parse("enabled = false").unwrap(),
            KuboApiEnabled::Set(false)
        );
        assert!(parse("enabled = \"yes\"").is_err());
        let auto = KuboApiConfig::default();
        assert!(auto.is_enabled(true) && !auto.is_enabled(false));
    }
}
