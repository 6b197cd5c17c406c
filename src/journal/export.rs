//! What `tablo journal` and `GET /journal/export` print
//! (docs/protocol.md §19.3, §19.4; gaps in docs/durability.md §4): the
//! journal's records as JSON lines, one per record in seq order. An event is
//! its stored JSON, byte for byte as it was sent to clients; a lost range is
//! `{"type":"gap","from":A,"to":B,"handed_out_max":K}` in its place.
//!
//! [`Export`] walks the journal page by page, so an export of any length
//! holds one page at a time. It and [`push_line`] are pure: they format
//! into buffers, and both readers use them — [`write_export`] and
//! [`stats_json`] for `tablo journal` on the journal files (a [`Store`] the
//! caller opened), and `server` for `/journal/*` through the journal writer.
//!
//! What it must not do: touch a socket or the clock, write to the journal,
//! or interpret the event JSON.

use std::io::{self, Write};

use serde_json::{Value, json};

use crate::journal::store::{Opened, Record, Store, StoreError};

/// Records per read when exporting from the journal files: big enough that
/// a read costs little per record, small enough that a page of even large
/// events stays far below a megabyte or two.
pub const FILE_PAGE: usize = 1000;

/// Records `/journal/export` answers at most when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 1000;

/// Largest `limit` `/journal/export` accepts: it pages through the journal,
/// so this bounds one request's time, not its memory; `tablo journal
/// export` asks again from where an answer stopped.
pub const MAX_LIMIT: usize = 100_000;

/// Largest `tail` (`tablo journal tail -n N`, `/journal/export?tail=N`): the
/// newest records are read in one go, so this bounds the memory of one
/// request (a few MiB); `export --since` pages through any number.
pub const MAX_TAIL: usize = 10_000;

/// Appends `record` to `out` as one JSON line (with its `\n`). A gap that
/// starts at or before `after` (a read returns a gap that holds `after + 1`
/// as stored) is clipped to start at `after + 1`, so an export after `after`
/// never names a seq at or before it.
pub fn push_line(out: &mut Vec<u8>, record: &Record, after: u64) {
    match record {
        Record::Event { json, .. } => out.extend_from_slice(json),
        Record::Gap {
            from,
            to,
            handed_out_max,
        } => {
            let from = (*from).max(after.saturating_add(1));
            // Writing into a Vec cannot fail.
            let _ = write_gap(out, from, *to, *handed_out_max);
        }
    }
    out.push(b'\n');
}

/// Writes `{"type":"gap","from":A,"to":B,"handed_out_max":K}` for seqs
/// `from..=to`, of which at most `handed_out_max` were ever handed out
/// (clipped to the range's length: a clipped gap keeps its bound).
/// docs/protocol.md §9, docs/durability.md §4.
pub fn write_gap(out: &mut Vec<u8>, from: u64, to: u64, handed_out_max: u64) -> io::Result<()> {
    let handed = handed_out_max.min(to.saturating_sub(from).saturating_add(1));
    write!(
        out,
        r#"{{"type":"gap","from":{from},"to":{to},"handed_out_max":{handed}}}"#
    )
}

/// The last seq `record` covers: the event's seq, or the end of the gap.
pub fn end_of(record: &Record) -> u64 {
    match *record {
        Record::Event { seq, .. } => seq,
        Record::Gap { to, .. } => to,
    }
}

/// An export in progress: the records after [`after`](Export::after), at
/// most [`left`](Export::left) more of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Export {
    after: u64,
    left: usize,
}

impl Export {
    /// The first `limit` records with seq > `since`.
    pub fn new(since: u64, limit: usize) -> Export {
        Export {
            after: since,
            left: limit,
        }
    }

    /// Every seq up to this one has been exported (or lies before `since`):
    /// the next read starts after it.
    pub fn after(&self) -> u64 {
        self.after
    }

    /// How many more records the export may emit.
    #[cfg(test)]
    pub fn left(&self) -> usize {
        self.left
    }

    /// How many records to read next, at most `page`; 0 when the export has
    /// reached its limit.
    pub fn next_read(&self, page: usize) -> usize {
        self.left.min(page)
    }

    /// Appends the lines of `records` (read after [`after`](Export::after))
    /// to `out`, up to the limit, and moves on past them. Returns how many
    /// lines it appended: 0 means the journal has nothing after this point
    /// (or the limit was reached), and the export is complete.
    pub fn push_page(&mut self, records: &[Record], out: &mut Vec<u8>) -> usize {
        let mut pushed = 0;
        for record in records {
            if self.left == 0 {
                break;
            }
            // A read returns records in seq order, each past `after`; one
            // that is not (a straddling gap already printed) is skipped.
            let end = end_of(record);
            if end <= self.after {
                continue;
            }
            push_line(out, record, self.after);
            self.after = end;
            self.left -= 1;
            pushed += 1;
        }
        pushed
    }
}

/// The newest `records` (from a tail read, in ascending order) as JSON lines
/// appended to `out`.
pub fn push_tail(records: &[Record], out: &mut Vec<u8>) {
    for record in records {
        push_line(out, record, 0);
    }
}

/// `tablo journal stats` for a journal opened from its files: the same
/// counters as `/journal/stats` where they mean the same thing (`events`,
/// `bytes`, `first_seq`, `last_seq`, `disk_bytes`, `epoch`), and `next_seq`,
/// the seq the next run of the daemon starts at.
pub fn stats_json(opened: &Opened) -> Value {
    let stats = opened.store.stats();
    json!({
        "epoch": opened.epoch,
        "events": stats.events,
        "bytes": stats.bytes,
        "first_seq": stats.first_seq,
        "last_seq": stats.last_seq,
        "disk_bytes": stats.disk_bytes,
        "next_seq": opened.next_seq,
        "trimmed_below": opened.store.trimmed_below(),
    })
}

/// Why writing an export from the journal files stopped early.
#[derive(Debug)]
pub enum WriteError {
    /// Reading the journal failed.
    Store(StoreError),
    /// Writing the output failed (a closed pipe is `BrokenPipe`).
    Output(io::Error),
}

/// Writes every record of `store` with seq > `since` to `out`, reading
/// [`FILE_PAGE`] records at a time, and flushes `out`.
pub fn write_export(store: &Store, since: u64, out: &mut impl Write) -> Result<(), WriteError> {
    let mut export = Export::new(since, usize::MAX);
    let mut buf = Vec::new();
    loop {
        let records = store
            .read(export.after(), export.next_read(FILE_PAGE))
            .map_err(WriteError::Store)?;
        buf.clear();
        if export.push_page(&records, &mut buf) == 0 {
            break;
        }
        out.write_all(&buf).map_err(WriteError::Output)?;
    }
    out.flush().map_err(WriteError::Output)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64, json: &str) -> Record {
        Record::Event {
            seq,
            at: 1_000 + seq,
            json: json.as_bytes().to_vec(),
        }
    }

    fn gap(from: u64, to: u64) -> Record {
        Record::Gap {
            from,
            to,
            handed_out_max: to - from + 1,
        }
    }

    #[track_caller]
    fn check(record: Record, after: u64, want: &str) {
        let mut out = Vec::new();
        push_line(&mut out, &record, after);
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }

    #[test]
    fn events_are_their_stored_bytes_and_gaps_a_gap_record() {
        let tick = r#"{"type":"tick","seq":7,"channel":"prices","symbol":"BTCUSDT","price":"67012.50","ts":1}"#;
        check(event(7, tick), 0, &format!("{tick}\n"));
        // Not re-serialized: spacing and key order stay as stored.
        check(
            event(8, r#"{ "b":1, "a":"é" }"#),
            0,
            "{ \"b\":1, \"a\":\"é\" }\n",
        );
        check(
            gap(11, 100),
            0,
            "{\"type\":\"gap\",\"from\":11,\"to\":100,\"handed_out_max\":90}\n",
        );
        check(
            gap(11, 100),
            10,
            "{\"type\":\"gap\",\"from\":11,\"to\":100,\"handed_out_max\":90}\n",
        );
        // A gap holding after + 1 is clipped to start there.
        check(
            gap(11, 100),
            50,
            "{\"type\":\"gap\",\"from\":51,\"to\":100,\"handed_out_max\":50}\n",
        );
        check(
            gap(u64::MAX - 1, u64::MAX),
            u64::MAX,
            &format!(
                "{{\"type\":\"gap\",\"from\":{},\"to\":{},\"handed_out_max\":1}}\n",
                u64::MAX,
                u64::MAX
            ),
        );
    }

    #[test]
    fn gap_lines_parse_as_the_protocol_gap() {
        let mut out = Vec::new();
        push_line(&mut out, &gap(3, 9), 0);
        let value: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            value,
            json!({"type": "gap", "from": 3, "to": 9, "handed_out_max": 7})
        );
    }

    #[test]
    fn export_pages_advance_past_events_and_gaps() {
        let mut export = Export::new(0, usize::MAX);
        let mut out = Vec::new();
        assert_eq!(export.next_read(FILE_PAGE), FILE_PAGE);
        let page = [event(1, "{1}"), gap(2, 4), event(5, "{5}")];
        assert_eq!(export.push_page(&page, &mut out), 3);
        assert_eq!(export.after(), 5);
        let page = [event(6, "{6}"), gap(7, 9)];
        assert_eq!(export.push_page(&page, &mut out), 2);
        assert_eq!(export.after(), 9);
        assert_eq!(export.push_page(&[], &mut out), 0);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{1}\n{\"type\":\"gap\",\"from\":2,\"to\":4,\"handed_out_max\":3}\n{5}\n{6}\n\
             {\"type\":\"gap\",\"from\":7,\"to\":9,\"handed_out_max\":3}\n"
        );
    }

    #[test]
    fn export_since_clips_a_straddling_gap_and_skips_what_is_behind() {
        let mut export = Export::new(5, usize::MAX);
        let mut out = Vec::new();
        // A read after 5 returns the gap 3..=8 as stored.
        let page = [gap(3, 8), event(9, "{9}")];
        assert_eq!(export.push_page(&page, &mut out), 2);
        // Records at or before `after` (never returned by a read) are skipped.
        assert_eq!(export.push_page(&[event(9, "{9}")], &mut out), 0);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"type\":\"gap\",\"from\":6,\"to\":8,\"handed_out_max\":3}\n{9}\n"
        );
    }

    #[test]
    fn export_stops_at_its_limit() {
        let mut export = Export::new(0, 3);
        assert_eq!(export.next_read(256), 3);
        let mut out = Vec::new();
        let page = [event(1, "{1}"), event(2, "{2}")];
        assert_eq!(export.push_page(&page, &mut out), 2);
        assert_eq!((export.left(), export.next_read(256)), (1, 1));
        let page = [gap(3, 3), event(4, "{4}")];
        assert_eq!(export.push_page(&page, &mut out), 1);
        assert_eq!(
            (export.left(), export.next_read(256), export.after()),
            (0, 0, 3)
        );
        assert_eq!(export.push_page(&[event(4, "{4}")], &mut out), 0);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{1}\n{2}\n{\"type\":\"gap\",\"from\":3,\"to\":3,\"handed_out_max\":1}\n"
        );
    }

    #[test]
    fn tail_prints_records_as_they_are() {
        let mut out = Vec::new();
        push_tail(&[gap(1, 2), event(3, "{3}")], &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"type\":\"gap\",\"from\":1,\"to\":2,\"handed_out_max\":2}\n{3}\n"
        );
        let mut out = Vec::new();
        push_tail(&[], &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn write_export_pages_through_a_store() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        let mut store = Store::open(&dir, 1 << 20).unwrap().store;
        let count = FILE_PAGE as u64 * 2 + 10;
        for seq in 1..=count {
            store
                .append(seq, seq, format!("{{\"seq\":{seq}}}").as_bytes())
                .unwrap();
        }
        store.record_gap(count + 1, count + 5).unwrap();
        let mut out = Vec::new();
        write_export(&store, 0, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len() as u64, count + 1);
        assert_eq!(lines[0], "{\"seq\":1}");
        assert_eq!(lines[count as usize - 1], format!("{{\"seq\":{count}}}"));
        assert_eq!(
            lines[count as usize],
            format!(
                "{{\"type\":\"gap\",\"from\":{},\"to\":{},\"handed_out_max\":5}}",
                count + 1,
                count + 5
            )
        );
        let mut out = Vec::new();
        write_export(&store, count - 1, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 2);
        let mut out = Vec::new();
        write_export(&store, count + 5, &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn stats_name_the_counters_and_the_epoch() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        let mut opened = Store::open(&dir, 1 << 20).unwrap();
        opened.store.append(1, 1, b"{}").unwrap();
        opened.store.append(2, 2, b"{ }").unwrap();
        let stats = stats_json(&opened);
        assert_eq!(stats["epoch"], json!(opened.epoch));
        assert_eq!((&stats["events"], &stats["bytes"]), (&json!(2), &json!(5)));
        assert_eq!(
            (&stats["first_seq"], &stats["last_seq"]),
            (&json!(1), &json!(2))
        );
        assert!(stats["disk_bytes"].as_u64().is_some(), "{stats}");
        assert_eq!(stats["next_seq"], json!(1));
    }
}
