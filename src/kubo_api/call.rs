//! One RPC call as go-ipfs-cmds reads it from the URL: the command path after `/api/v0/`, the
//! positional `arg=` values, and the options by any of their names (`count` or `n`).

use std::collections::HashMap;

use super::Failure;

/// A parsed call.
#[derive(Debug, Default)]
pub struct Call {
    pub command: String,
    pub args: Vec<String>,
    options: HashMap<String, String>,
    /// The request body (a multipart upload for `add`, `key import`), already bounded.
    pub body: bytes::Bytes,
    /// Its `Content-Type`.
    pub content_type: Option<String>,
}

impl Call {
    /// `path` is the URL path after `/api/v0/`; `query` the raw query string.
    pub fn parse(path: &str, query: Option<&str>) -> Call {
        let mut call = Call {
            command: path.trim_matches('/').to_owned(),
            ..Call::default()
        };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (name, value) = (percent_decode(name), percent_decode(value));
            if name == "arg" {
                call.args.push(value);
            } else {
                call.options.insert(name, value);
            }
        }
        call
    }

    /// Positional argument `index`, named `name` in go-ipfs-cmds' "required" error.
    pub fn arg(&self, index: usize, name: &str) -> Result<&str, Failure> {
        self.args
            .get(index)
            .map(String::as_str)
            .ok_or_else(|| Failure::client(format!("argument \"{name}\" is required")))
    }

    /// A string option under any of `names`.
    pub fn option(&self, names: &[&str]) -> Option<&str> {
        names
            .iter()
            .find_map(|n| self.options.get(*n))
            .map(String::as_str)
    }

    /// An option that is a number, `default` when absent.
    pub fn number<T: std::str::FromStr>(&self, names: &[&str], default: T) -> Result<T, Failure> {
        match self.option(names) {
            None => Ok(default),
            Some(text) => text.parse().map_err(|_| {
                let shown = crate::identity::shorten(text);
                Failure::client(format!("option {:?}: {shown:?} is not a number", names[0]))
            }),
        }
    }

    /// A boolean option with a default (`--pin` is true unless `pin=false`).
    pub fn flag_or(&self, names: &[&str], default: bool) -> Result<bool, Failure> {
        match self.option(names) {
            None => Ok(default),
            Some(_) => self.flag(names),
        }
    }

    /// A boolean option (`true`, `1`, or present without a value).
    pub fn flag(&self, names: &[&str]) -> Result<bool, Failure> {
        match self.option(names) {
            None => Ok(false),
            Some("" | "true" | "1" | "t" | "T" | "TRUE" | "True") => Ok(true),
            Some("false" | "0" | "f" | "F" | "FALSE" | "False") => Ok(false),
            Some(other) => Err(Failure::client(format!(
                "option {:?}: {:?} is not a boolean",
                names[0],
                crate::identity::shorten(other)
            ))),
        }
    }
}

/// `application/x-www-form-urlencoded` decoding: `%XX` and `+`; bad escapes are kept as they are.
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_and_options_by_any_name() {
        let call = Call::parse(
            "p2p/listen",
            Some("arg=%2Fx%2Fssh&arg=/ip4/127.0.0.1/tcp/22&r=true&allow-custom-protocol"),
        );
        assert_eq!(call.command, "p2p/listen");
        assert_eq!(call.args, ["/x/ssh", "/ip4/127.0.0.1/tcp/22"]);
        assert!(call.flag(&["report-peer-id", "r"]).unwrap());
        assert!(call.flag(&["allow-custom-protocol"]).unwrap());
        assert!(!call.flag(&["foreground", "f"]).unwrap());
        assert!(call.arg(2, "x").is_err());
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz%41+b"), "%zzA b");
        assert_eq!(percent_decode("%e2%82%ac"), "€");
    }
}
