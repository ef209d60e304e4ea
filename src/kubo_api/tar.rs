//! The tar stream `ipfs get` answers, as boxo's `tar.Writer` writes it (POSIX ustar, folders
//! mode 0777, files 0644), from a folder on disk into any `Write`.

use std::io::{Read as _, Write};
use std::path::Path;

/// A tar block.
const BLOCK: usize = 512;
/// Kubo's modes in a `get` tar (boxo `tar/writer.go`).
const DIR_MODE: u32 = 0o777;
const FILE_MODE: u32 = 0o644;

/// What a tar entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Directory,
}

/// One ustar header. A path longer than 100 bytes is split into `prefix/name` at a `/`.
pub fn header(path: &str, kind: EntryKind, size: u64, mtime: u64) -> Result<[u8; BLOCK], String> {
    let mut block = [0u8; BLOCK];
    let (prefix, name) = split_name(path)?;
    block[..name.len()].copy_from_slice(name.as_bytes());
    let (mode, flag) = match kind {
        EntryKind::File => (FILE_MODE, b'0'),
        EntryKind::Directory => (DIR_MODE, b'5'),
    };
    octal(&mut block[100..108], u64::from(mode));
    octal(&mut block[108..116], 0);
    octal(&mut block[116..124], 0);
    octal(&mut block[124..136], size);
    octal(&mut block[136..148], mtime);
    block[156] = flag;
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    block[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
    block[148..156].copy_from_slice(b"        ");
    let sum: u64 = block.iter().map(|&b| u64::from(b)).sum();
    octal(&mut block[148..155], sum);
    block[155] = b' ';
    Ok(block)
}

/// `(prefix, name)` with name ≤ 100 and prefix ≤ 155 bytes.
fn split_name(path: &str) -> Result<(&str, &str), String> {
    if path.len() <= 100 {
        return Ok(("", path));
    }
    for (i, _) in path.match_indices('/') {
        let (prefix, name) = (&path[..i], &path[i + 1..]);
        if prefix.len() <= 155 && name.len() <= 100 && !name.is_empty() {
            return Ok((prefix, name));
        }
    }
    Err(format!("path {path:?} is too long for a tar header"))
}

/// Zero-padded octal that fills the field but its last byte (NUL).
fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let text = format!("{value:0width$o}");
    let text = &text.as_bytes()[text.len().saturating_sub(width)..];
    field[..width].copy_from_slice(text);
    field[width] = 0;
}

/// What follows a file entry of `size` bytes when it is the last: its padding, then the end of
/// the archive (two zero blocks).
pub fn end_after_file(size: u64) -> Vec<u8> {
    vec![0u8; padding(size) + 2 * BLOCK]
}

fn padding(size: u64) -> usize {
    (BLOCK - (size % BLOCK as u64) as usize) % BLOCK
}

/// Write `root` (a file or a folder, recursively, names sorted) as entries named `name/…`, then
/// the end of the archive.
pub fn write_tree(
    out: &mut impl Write,
    root: &Path,
    name: &str,
    mtime: u64,
) -> std::io::Result<()> {
    entry(out, root, name, mtime)?;
    out.write_all(&[0u8; 2 * BLOCK])?;
    out.flush()
}

fn entry(out: &mut impl Write, path: &Path, name: &str, mtime: u64) -> std::io::Result<()> {
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        out.write_all(&header(name, EntryKind::Directory, 0, mtime).map_err(invalid)?)?;
        let mut names: Vec<_> = (std::fs::read_dir(path)?)
            .filter_map(|e| e.ok().and_then(|e| e.file_name().into_string().ok()))
            .collect();
        names.sort();
        for child in names {
            entry(out, &path.join(&child), &format!("{name}/{child}"), mtime)?;
        }
        return Ok(());
    }
    let size = meta.len();
    out.write_all(&header(name, EntryKind::File, size, mtime).map_err(invalid)?)?;
    let copied = std::io::copy(&mut std::fs::File::open(path)?.take(size), out)?;
    if copied != size {
        return Err(std::io::Error::other(format!(
            "{} changed while read",
            path.display()
        )));
    }
    out.write_all(&vec![0u8; padding(size)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_carry_a_valid_checksum_and_long_names_split() {
        let block = header("d/a.txt", EntryKind::File, 5, 0).unwrap();
        assert_eq!(&block[..7], b"d/a.txt");
        assert_eq!(&block[124..135], b"00000000005");
        let stored = std::str::from_utf8(&block[148..154]).unwrap();
        let mut check = block;
        check[148..156].copy_from_slice(b"        ");
        let sum: u64 = check.iter().map(|&b| u64::from(b)).sum();
        assert_eq!(u64::from_str_radix(stored, 8).unwrap(), sum);
        let long = format!("{}/{}", "a".repeat(120), "b".repeat(90));
        let block = header(&long, EntryKind::Directory, 0, 0).unwrap();
        assert_eq!(&block[345..465], "a".repeat(120).as_bytes());
        assert!(header(&"x".repeat(300), EntryKind::File, 0, 0).is_err());
    }
}
