//! NIP-01 filters as SQL: ids, authors, kinds, single-letter tags, since, until, limit.
//! Results come newest first, and on a tie in `created_at` the lowest id first.

use nostr::prelude::Filter;
use rusqlite::types::Value;

/// Which columns a query returns.
#[derive(Debug, Clone, Copy)]
pub enum Select {
    /// `(id, json)`: the event as stored.
    Json,
    /// `(created_at, id)`: the NIP-77 item set.
    Items,
    /// `count(*)`.
    Count,
}

/// A filter that matches nothing (an empty `ids`, `authors`, `kinds` or tag set).
pub fn matches_nothing(filter: &Filter) -> bool {
    filter.ids.as_ref().is_some_and(|s| s.is_empty())
        || filter.authors.as_ref().is_some_and(|s| s.is_empty())
        || filter.kinds.as_ref().is_some_and(|s| s.is_empty())
        || filter.generic_tags.values().any(|s| s.is_empty())
        || matches!((filter.since, filter.until), (Some(s), Some(u)) if s > u)
}

fn placeholders(n: usize) -> String {
    let mut s = String::with_capacity(n * 2);
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        s.push('?');
    }
    s
}

/// SQL and its parameters for `filter`; `limit` is the row cap (None: every match).
pub fn build(filter: &Filter, select: Select, limit: Option<usize>) -> (String, Vec<Value>) {
    let columns = match select {
        Select::Json => "id, json",
        Select::Items => "created_at, id",
        Select::Count => "count(*)",
    };
    let mut sql = format!("SELECT {columns} FROM events WHERE 1");
    let mut params: Vec<Value> = Vec::new();
    if let Some(ids) = &filter.ids {
        sql.push_str(&format!(" AND id IN ({})", placeholders(ids.len())));
        params.extend(ids.iter().map(|id| Value::Blob(id.to_bytes().to_vec())));
    }
    if let Some(authors) = &filter.authors {
        sql.push_str(&format!(" AND pubkey IN ({})", placeholders(authors.len())));
        params.extend(authors.iter().map(|pk| Value::Blob(pk.to_bytes().to_vec())));
    }
    if let Some(kinds) = &filter.kinds {
        sql.push_str(&format!(" AND kind IN ({})", placeholders(kinds.len())));
        params.extend(kinds.iter().map(|k| Value::Integer(i64::from(k.as_u16()))));
    }
    if let Some(since) = filter.since {
        sql.push_str(" AND created_at >= ?");
        params.push(Value::Integer(since.as_secs() as i64));
    }
    if let Some(until) = filter.until {
        sql.push_str(" AND created_at <= ?");
        params.push(Value::Integer(until.as_secs() as i64));
    }
    for (letter, values) in &filter.generic_tags {
        sql.push_str(&format!(
            " AND seq IN (SELECT seq FROM tags WHERE name = ? AND value IN ({}))",
            placeholders(values.len())
        ));
        params.push(Value::Text(letter.as_char().to_string()));
        params.extend(values.iter().map(|v| Value::Text(v.clone())));
    }
    if !matches!(select, Select::Count) {
        sql.push_str(" ORDER BY created_at DESC, id ASC");
        if let Some(limit) = limit {
            sql.push_str(" LIMIT ?");
            params.push(Value::Integer(limit as i64));
        }
    }
    (sql, params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::prelude::*;

    #[test]
    fn every_field_becomes_a_bound_condition() {
        let pk = Keys::generate().public_key();
        let filter = Filter::new()
            .author(pk)
            .kinds([Kind::TextNote, Kind::Metadata])
            .since(Timestamp::from(10))
            .until(Timestamp::from(20))
            .hashtag("nostr");
        let (sql, params) = build(&filter, Select::Json, Some(500));
        assert!(sql.contains("pubkey IN (?)"), "{sql}");
        assert!(sql.contains("kind IN (?,?)"), "{sql}");
        assert!(sql.contains("created_at >= ?"));
        assert!(sql.contains("created_at <= ?"));
        assert!(sql.contains("name = ? AND value IN (?)"));
        assert!(sql.ends_with("ORDER BY created_at DESC, id ASC LIMIT ?"));
        // pubkey, 2 kinds, since, until, tag name, tag value, limit
        assert_eq!(params.len(), 8);
        assert_eq!(params[5], Value::Text("t".into()));
    }

    #[test]
    fn empty_sets_and_inverted_windows_match_nothing() {
        assert!(matches_nothing(
            &Filter::new().authors(Vec::<PublicKey>::new())
        ));
        assert!(matches_nothing(
            &Filter::new()
                .since(Timestamp::from(5))
                .until(Timestamp::from(4))
        ));
        assert!(!matches_nothing(&Filter::new().kind(Kind::TextNote)));
    }
}
