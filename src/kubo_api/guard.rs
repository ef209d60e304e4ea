//! Who may call the API, as Kubo decides it: POST only, `Origin`/`Referer` against the allowed
//! origins (the API's own localhost origins, or `API.HTTPHeaders.Access-Control-Allow-Origin`),
//! browsers without either refused, and `API.Authorizations` secrets with their allowed paths.

use base64::Engine as _;

/// Origins Kubo always allows besides the configured ones (`<port>`: the API's port).
const LOCALHOST_ORIGINS: [&str; 6] = [
    "http://127.0.0.1:<port>",
    "https://127.0.0.1:<port>",
    "http://[::1]:<port>",
    "https://[::1]:<port>",
    "http://localhost:<port>",
    "https://localhost:<port>",
];
/// The ipfs-companion browser extensions, allowed by Kubo too.
const COMPANION_ORIGINS: [&str; 2] = [
    "chrome-extension://nibjojkomfdiaoajekhjakgkdhaomnch",
    "chrome-extension://hjoieblefckbooibpepigmacodalfndh",
];
/// Kubo lets any authorized caller ask the version, whatever its allowed paths.
const VERSION_PATH: &str = "/api/v0/version";

/// Why a request is refused; each maps to Kubo's status and plain-text body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not POST (or OPTIONS): 405.
    Method,
    /// A foreign `Origin`/`Referer`, or a browser with neither: 403.
    Origin,
    /// `API.Authorizations` is set and the `Authorization` header matches none for this path.
    Unauthorized,
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Method => 405,
            Refusal::Origin | Refusal::Unauthorized => 403,
        }
    }

    /// Kubo's exact body text.
    pub fn body(&self) -> &'static str {
        match self {
            Refusal::Method => "405 - Method Not Allowed",
            Refusal::Origin => "403 - Forbidden",
            Refusal::Unauthorized => {
                "Kubo RPC Access Denied: Please provide a valid authorization token as defined in the API.Authorizations configuration."
            }
        }
    }
}

/// One accepted `Authorization` header value and the path prefixes it opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub header: String,
    pub allowed_paths: Vec<String>,
}

/// The parts of a request the guard looks at.
pub struct Asked<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub origin: Option<&'a str>,
    pub referer: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub authorization: Option<&'a str>,
}

/// The API's access policy.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    allowed_origins: Vec<String>,
    authorizations: Vec<Authorization>,
}

impl Policy {
    /// `configured`: `API.HTTPHeaders.Access-Control-Allow-Origin` (may hold `*`); `port`: ours.
    pub fn new(configured: &[String], port: u16, authorizations: Vec<Authorization>) -> Policy {
        let port = port.to_string();
        let allowed_origins = (configured.iter().map(String::as_str))
            .chain(LOCALHOST_ORIGINS)
            .chain(COMPANION_ORIGINS)
            .map(|o| o.replace("<port>", &port))
            .collect();
        Policy {
            allowed_origins,
            authorizations,
        }
    }

    /// Kubo's order: the authorization wrapper first, then the method, then the origin checks.
    /// `Ok(true)`: an OPTIONS request (answered 204 with `Allow`).
    pub fn check(&self, asked: &Asked) -> Result<bool, Refusal> {
        if !self.authorizations.is_empty() && !self.authorized(asked) {
            return Err(Refusal::Unauthorized);
        }
        match asked.method {
            "OPTIONS" => return Ok(true),
            "POST" => {}
            _ => return Err(Refusal::Method),
        }
        let origin_ok = asked.origin.is_none_or(|o| self.allows(o));
        let referer_ok = asked
            .referer
            .is_none_or(|r| referer_origin(r).is_some_and(|o| self.allows(&o)));
        // A browser that sends neither header is refused (Kubo's `allowUserAgent`).
        let browser = asked.origin.is_none()
            && asked.referer.is_none()
            && asked
                .user_agent
                .is_some_and(|ua| ua.starts_with("Mozilla") && !ua.contains("Electron"));
        if origin_ok && referer_ok && !browser {
            Ok(false)
        } else {
            Err(Refusal::Origin)
        }
    }

    fn allows(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|o| o == "*" || o == origin)
    }

    fn authorized(&self, asked: &Asked) -> bool {
        let Some(header) = asked.authorization else {
            return false;
        };
        self.authorizations.iter().any(|a| {
            a.header == header
                && (asked.path == VERSION_PATH
                    || a.allowed_paths.iter().any(|p| asked.path.starts_with(p)))
        })
    }
}

/// `scheme://host[:port]` of a `Referer` URL, as Go's `url.Parse` gives `Scheme + "://" + Host`.
fn referer_origin(referer: &str) -> Option<String> {
    let (scheme, rest) = referer.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    Some(format!("{scheme}://{host}"))
}

/// Kubo's `ConvertAuthSecret`: `basic:user:pass`, `basic:<base64>`, `bearer:<token>` or a bare
/// token, as the `Authorization` header value that carries it; `None` for an unknown type.
pub fn auth_header(secret: &str) -> Option<String> {
    if secret.is_empty() {
        return None;
    }
    match secret.split_once(':') {
        None => Some(format!("Bearer {secret}")),
        Some(("basic", rest)) if rest.contains(':') => Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(rest)
        )),
        Some(("basic", rest)) => Some(format!("Basic {rest}")),
        Some(("bearer", rest)) => Some(format!("Bearer {rest}")),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked<'a>(method: &'a str, origin: Option<&'a str>) -> Asked<'a> {
        Asked {
            method,
            path: "/api/v0/id",
            origin,
            referer: None,
            user_agent: Some("python"),
            authorization: None,
        }
    }

    #[test]
    fn post_only_and_own_origins() {
        let policy = Policy::new(&[], 5001, Vec::new());
        assert_eq!(policy.check(&asked("POST", None)), Ok(false));
        assert_eq!(policy.check(&asked("OPTIONS", None)), Ok(true));
        assert_eq!(policy.check(&asked("GET", None)), Err(Refusal::Method));
        let own = asked("POST", Some("http://127.0.0.1:5001"));
        assert_eq!(policy.check(&own), Ok(false));
        let other_port = asked("POST", Some("http://127.0.0.1:8080"));
        assert_eq!(policy.check(&other_port), Err(Refusal::Origin));
        let mut page = asked("POST", None);
        page.referer = Some("https://evil.example/page?x=1");
        assert_eq!(policy.check(&page), Err(Refusal::Origin));
        let mut browser = asked("POST", None);
        browser.user_agent = Some("Mozilla/5.0 (X11; Linux x86_64)");
        assert_eq!(policy.check(&browser), Err(Refusal::Origin));
        let star = Policy::new(&["*".into()], 5001, Vec::new());
        assert_eq!(
            star.check(&asked("POST", Some("https://a.example"))),
            Ok(false)
        );
    }

    #[test]
    fn authorizations_open_their_paths_only() {
        let auth = Authorization {
            header: auth_header("basic:alice:secret").unwrap(),
            allowed_paths: vec!["/api/v0/p2p".into()],
        };
        assert_eq!(auth.header, "Basic YWxpY2U6c2VjcmV0");
        let policy = Policy::new(&[], 5001, vec![auth.clone()]);
        let mut call = asked("POST", None);
        assert_eq!(policy.check(&call), Err(Refusal::Unauthorized));
        call.authorization = Some(&auth.header);
        assert_eq!(policy.check(&call), Err(Refusal::Unauthorized)); // /api/v0/id not allowed
        call.path = "/api/v0/p2p/ls";
        assert_eq!(policy.check(&call), Ok(false));
        call.path = VERSION_PATH;
        assert_eq!(policy.check(&call), Ok(false));
        assert_eq!(auth_header("tok").as_deref(), Some("Bearer tok"));
        assert_eq!(auth_header("bearer:tok").as_deref(), Some("Bearer tok"));
        assert_eq!(auth_header("digest:x"), None);
    }
}
