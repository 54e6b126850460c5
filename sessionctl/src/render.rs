//! Human and JSON renderings.

use std::time::{Duration, UNIX_EPOCH};

use session_core::Timestamp;

/// Latest instant humantime renders (9999-12-31T23:59:59.999Z).
const MAX_RENDERABLE_MS: i64 = 253_402_300_799_999;

/// RFC 3339 in UTC, or a plain millisecond figure outside years 1970..=9999.
pub(crate) fn time(t: Timestamp) -> String {
    let ms = t.as_millis();
    if t == Timestamp::MAX {
        return "never".into();
    }
    if !(0..=MAX_RENDERABLE_MS).contains(&ms) {
        return format!("{ms}ms since epoch");
    }
    let st = UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs());
    humantime::format_rfc3339_millis(st).to_string()
}

/// "in 1h 59m" / "2m ago", rounded to seconds.
pub(crate) fn relative(t: Timestamp, now: Timestamp) -> String {
    if t >= now {
        let d = Duration::from_secs(t.duration_since(now).as_secs());
        format!("in {}", humantime::format_duration(d))
    } else {
        let d = Duration::from_secs(now.duration_since(t).as_secs());
        format!("{} ago", humantime::format_duration(d))
    }
}

/// A fixed-width text table.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            out.push_str(cell);
            if i + 1 < cells.len() {
                out.push_str(&" ".repeat(w.saturating_sub(cell.chars().count())));
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// A horizontal bar of `width` cells for `fraction` in 0..=1.
pub(crate) fn bar(fraction: f64, width: usize) -> String {
    let filled = (fraction.clamp(0.0, 1.0) * width as f64).round() as usize;
    format!(
        "{}{}",
        "#".repeat(filled),
        ".".repeat(width - filled.min(width))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_render_without_panicking_at_the_edges() {
        assert_eq!(time(Timestamp::from_millis(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(time(Timestamp::MAX), "never");
        assert!(time(Timestamp::MIN).contains("since epoch"));
        assert!(time(Timestamp::from_millis(MAX_RENDERABLE_MS + 1)).contains("since epoch"));
        let now = Timestamp::from_millis(10_000);
        assert_eq!(relative(Timestamp::from_millis(70_000), now), "in 1m");
        assert_eq!(relative(Timestamp::from_millis(0), now), "10s ago");
    }

    #[test]
    fn tables_align() {
        let t = table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y\n");
        assert_eq!(bar(0.5, 4), "##..");
        assert_eq!(bar(7.0, 2), "##");
    }
}
