//! The `multipart/form-data` bodies Kubo clients upload (`add`, `key import`): go-ipfs-files'
//! layout, one part per file, folder or symlink, its path URL-escaped in `filename`. Pure parsing
//! of a body already bounded by the server; names are checked before anything touches a disk.

use bytes::Bytes;

/// Largest upload (`add`, `key import`), held in memory while it is unpacked: a station adds
/// its folder (kilobytes) and small files; 64 MiB leaves room and stays safe on a Raspberry Pi.
pub const MAX_UPLOAD_BYTES: usize = 64 * 1024 * 1024;
/// Parts in one upload: a station folder has a few dozen; the bound refuses a flood of tiny
/// parts early, at the same count as a folder read ([`crate::ipfs::unixfs::FolderLimits`]).
pub const MAX_PARTS: usize = crate::ipfs::unixfs::FolderLimits::STATION.max_entries;
/// Longest header block of one part.
const MAX_PART_HEAD_BYTES: usize = 8 * 1024;

/// What a part holds, from its `Content-Type` (go-ipfs-files' types).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartKind {
    File,
    Directory,
    Symlink,
}

/// One uploaded entry: its relative path (names split on `/`, each checked) and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub path: Vec<String>,
    pub kind: PartKind,
    pub data: Bytes,
}

/// The boundary of a `multipart/form-data; boundary=…` content type.
pub fn boundary(content_type: &str) -> Result<String, String> {
    let (kind, params) = content_type.split_once(';').unwrap_or((content_type, ""));
    let kind = kind.trim().to_ascii_lowercase();
    if kind != "multipart/form-data" && kind != "multipart/mixed" {
        return Err(format!("expected a multipart body, got {content_type:?}"));
    }
    for param in params.split(';') {
        if let Some((name, value)) = param.trim().split_once('=')
            && name.trim().eq_ignore_ascii_case("boundary")
        {
            let value = value.trim().trim_matches('"');
            if !value.is_empty() && value.len() <= 70 {
                return Ok(value.to_owned());
            }
        }
    }
    Err("the multipart body has no boundary".into())
}

/// Split `body` into its parts.
pub fn parse(body: &Bytes, boundary: &str) -> Result<Vec<Part>, String> {
    let delimiter = format!("--{boundary}");
    let mut at = find(body, delimiter.as_bytes(), 0).ok_or("no multipart boundary in the body")?;
    let mut parts = Vec::new();
    loop {
        at += delimiter.len();
        if body[at..].starts_with(b"--") {
            return Ok(parts);
        }
        at = skip_line_end(body, at)?;
        let head_end = find(body, b"\r\n\r\n", at).ok_or("a part's headers do not end")?;
        if head_end - at > MAX_PART_HEAD_BYTES {
            return Err(format!("a part's headers pass {MAX_PART_HEAD_BYTES} bytes"));
        }
        let head =
            std::str::from_utf8(&body[at..head_end]).map_err(|_| "part headers are not UTF-8")?;
        let start = head_end + 4;
        let close = format!("\r\n{delimiter}");
        let end = find(body, close.as_bytes(), start).ok_or("the multipart body is truncated")?;
        if parts.len() >= MAX_PARTS {
            return Err(format!("more than {MAX_PARTS} parts"));
        }
        parts.push(part(head, body.slice(start..end))?);
        at = end + 2;
    }
}

fn part(head: &str, data: Bytes) -> Result<Part, String> {
    let (mut filename, mut kind) = (None, PartKind::File);
    for line in head.split("\r\n") {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-disposition" => filename = disposition_filename(value),
            "content-type" => {
                kind = match value.split(';').next().unwrap_or("").trim() {
                    "application/x-directory" => PartKind::Directory,
                    "application/symlink" => PartKind::Symlink,
                    _ => PartKind::File,
                }
            }
            _ => {}
        }
    }
    let filename = filename.unwrap_or_default();
    Ok(Part {
        path: checked_path(&super::call::percent_decode(&filename))?,
        kind,
        data,
    })
}

/// `filename="…"` (or unquoted) of a `Content-Disposition` value.
fn disposition_filename(value: &str) -> Option<String> {
    value.split(';').find_map(|param| {
        let (name, text) = param.trim().split_once('=')?;
        (name.trim() == "filename").then(|| text.trim().trim_matches('"').to_owned())
    })
}

/// The names of a relative upload path: no empty name (a leading or doubled `/` is dropped, as
/// Go's `path.Clean` does), no `.`/`..`, NUL or over-long name. An empty path is a bare upload
/// (`key import`, `add` of stdin), kept as no names.
fn checked_path(path: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for name in path.split('/').filter(|n| !n.is_empty()) {
        if name == "." || name == ".." || name.contains('\0') || name.len() > 255 {
            return Err(format!("refused upload path {path:?}"));
        }
        names.push(name.to_owned());
    }
    Ok(names)
}

fn skip_line_end(body: &[u8], at: usize) -> Result<usize, String> {
    match &body[at..] {
        [b'\r', b'\n', ..] => Ok(at + 2),
        [b'\n', ..] => Ok(at + 1),
        _ => Err("bad multipart boundary line".into()),
    }
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_ipfs_files_bodies_split_into_checked_parts() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"d\"\r\nContent-Type: application/x-directory\r\n\r\n\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"d%2Fa+b.txt\"\r\nContent-Type: application/octet-stream\r\nAbspath: /x\r\n\r\nhello\r\n\r\n--XyZ--\r\n";
        let ct = "multipart/form-data; boundary=XyZ";
        let parts = parse(&Bytes::from(body), &boundary(ct).unwrap()).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            (parts[0].path.clone(), parts[0].kind.clone()),
            (vec!["d".to_string()], PartKind::Directory)
        );
        assert_eq!(parts[1].path, ["d", "a b.txt"]);
        assert_eq!(&parts[1].data[..], b"hello\r\n");
        let evil = body.replace("d%2Fa+b.txt", "d%2F..%2Fx");
        assert!(parse(&Bytes::from(evil), "XyZ").is_err());
        assert!(parse(&Bytes::from(&body[..60]), "XyZ").is_err());
        assert!(boundary("application/json").is_err());
    }
}
