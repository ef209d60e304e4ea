//! The kind list the constellation syncs and the groups the report counts (from the original
//! `backfill_constellation.sh`, BRIEF section 1).

/// Every kind the constellation carries.
pub const SYNC_KINDS: &[u16] = &[
    0, 1, 3, 4, 5, 6, 7, 8, 21, 22, 40, 41, 42, 44, 1063, 1111, 1222, 1244, 1506, 1984, 1985, 1986,
    9735, 22242, 30001, 30005, 30008, 30009, 10001, 30023, 30024, 30078, 30303, 30312, 30313,
    30315, 30500, 30501, 30502, 30503, 30504, 30505, 30506, 30508, 30800, 30850, 30851, 30904,
    31900, 31901, 31902, 31910, 31922, 31923, 31924, 31925, 10000,
];

/// Station events, fetched from every peer without an author filter.
pub const STATION_KINDS: &[u16] = &[30800, 30850, 30851];

/// Direct messages, dropped with `--no-dms`.
pub const DM_KIND: u16 = 4;

/// The report's kind groups.
pub fn group_of(kind: u16) -> &'static str {
    match kind {
        0 | 1 | 3 | 6 | 7 => "social",
        4 => "private",
        21 | 22 | 1063 | 1222 | 1244 => "media",
        8 | 30008 | 30009 | 30312 | 30313 | 30500..=30503 | 30850 | 30851 | 31910 => "cooperative",
        30800 => "station",
        30023 | 30024 | 31922..=31925 | 10000 => "content",
        _ => "other",
    }
}

/// Group names in report order.
pub const GROUPS: &[&str] = &[
    "social",
    "private",
    "media",
    "cooperative",
    "station",
    "content",
    "other",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_follow_the_brief() {
        assert_eq!(group_of(7), "social");
        assert_eq!(group_of(4), "private");
        assert_eq!(group_of(1244), "media");
        assert_eq!(group_of(30502), "cooperative");
        assert_eq!(group_of(30800), "station");
        assert_eq!(group_of(31923), "content");
        assert_eq!(group_of(9735), "other");
    }

    #[test]
    fn the_kind_list_has_the_diagram_kinds_and_no_duplicates() {
        for k in [0, 1, 3, 5, 6, 7, 30023, 30024] {
            assert!(SYNC_KINDS.contains(&k));
        }
        let mut sorted = SYNC_KINDS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), SYNC_KINDS.len());
    }
}
