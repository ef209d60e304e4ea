//! Inline SVG charts for the report: horizontal bars (events per kind group, per peer) and a
//! trend of the last runs. Pure functions from numbers to markup.

/// Escape text for XML/HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Horizontal bars: one row per `(label, value)`, scaled to the largest value.
pub fn bars(id: &str, rows: &[(String, u64)], color: &str) -> String {
    const ROW: usize = 22;
    const LABEL: usize = 170;
    const WIDTH: usize = 360;
    if rows.is_empty() {
        return "<p class=dim>no events</p>".into();
    }
    let max = rows.iter().map(|r| r.1).max().unwrap_or(1).max(1);
    let height = rows.len() * ROW + 4;
    let mut out = format!(
        r#"<svg id="{id}" width="{w}" height="{height}" viewBox="0 0 {w} {height}" role="img">"#,
        w = LABEL + WIDTH + 60
    );
    for (i, (label, value)) in rows.iter().enumerate() {
        let y = i * ROW;
        let w = (*value as f64 / max as f64 * WIDTH as f64).round().max(1.0) as usize;
        let short: String = label.chars().take(24).collect();
        out.push_str(&format!(
            r##"<text x="0" y="{}" font-size="12" fill="#444">{}</text><rect x="{LABEL}" y="{}" width="{w}" height="14" rx="2" fill="{color}"/><text x="{}" y="{}" font-size="12" fill="#222">{value}</text>"##,
            y + 14,
            esc(&short),
            y + 3,
            LABEL + w + 6,
            y + 14,
        ));
    }
    out.push_str("</svg>");
    out
}

/// Vertical bars of one value per run, oldest left, the last one highlighted.
pub fn trend(id: &str, values: &[(i64, u64)]) -> String {
    const HEIGHT: usize = 90;
    const BAR: usize = 18;
    if values.is_empty() {
        return String::new();
    }
    let max = values.iter().map(|v| v.1).max().unwrap_or(1).max(1);
    // Wide enough for the caption even with one run.
    let width = (values.len() * (BAR + 4) + 4).max(260);
    let mut out = format!(
        r#"<svg id="{id}" width="{width}" height="{h}" viewBox="0 0 {width} {h}" role="img">"#,
        h = HEIGHT + 16
    );
    for (i, (run, value)) in values.iter().enumerate() {
        let h = ((*value as f64 / max as f64) * HEIGHT as f64)
            .round()
            .max(1.0) as usize;
        let color = if i + 1 == values.len() {
            "#1f6feb"
        } else {
            "#9ab8e8"
        };
        out.push_str(&format!(
            r#"<rect x="{}" y="{}" width="{BAR}" height="{h}" fill="{color}"><title>run {run}: {value}</title></rect>"#,
            4 + i * (BAR + 4),
            HEIGHT - h
        ));
    }
    out.push_str(&format!(
        r##"<line x1="0" y1="{HEIGHT}" x2="{width}" y2="{HEIGHT}" stroke="#ccc"/><text x="2" y="{}" font-size="11" fill="#666">last {} runs, imported events</text></svg>"##,
        HEIGHT + 13,
        values.len()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_and_escape_labels() {
        let svg = bars("g", &[("a<b".into(), 10), ("c".into(), 5)], "#000");
        assert!(svg.contains("a&lt;b"));
        assert!(svg.contains(r#"width="360""#));
        assert!(svg.contains(r#"width="180""#));
        assert!(bars("g", &[], "#000").contains("no events"));
    }

    #[test]
    fn trend_has_one_bar_per_run() {
        let svg = trend("t", &[(1, 3), (2, 0), (3, 9)]);
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains("run 3: 9"));
    }
}
