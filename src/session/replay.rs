//! Replays: a client's resume (`since`) played back from the journal.
//!
//! A replay is a marker in the client's outbox; when the writer task
//! reaches it, it reads the journal a page at a time and writes the events
//! the client's subscriptions match, with `gap` records where seqs are
//! lost, then goes on with the live frames queued behind the marker. So a
//! resume has no hole and no duplicate.

use std::io;

use smol::channel::{Sender, bounded};

use super::wire::{Socket, push_frame, write_all};
use crate::event::Event;
use crate::journal::export::write_gap;
use crate::journal::store::Record;
use crate::journal::writer::{JournalMsg, REPLAY_PAGE};
use crate::outbox::Replay;

/// Sends the journaled events of a [`Replay`] in order, pages at a time, with
/// `gap` records where seqs are lost. Paced by the socket: a page is read
/// only after the previous one was written.
pub(super) async fn play_back(
    socket: &Socket,
    journal: Option<&Sender<JournalMsg>>,
    replay: &Replay,
) -> io::Result<()> {
    let mut cursor = replay.after;
    let mut page = Vec::new();
    while cursor < replay.upto {
        let records = match journal {
            Some(journal) => read_page(journal, cursor).await,
            None => Vec::new(),
        };
        page.clear();
        if records.is_empty() {
            // Not in the journal (it failed or was trimmed meanwhile).
            let (from, to) = (cursor + 1, replay.upto);
            push_frame(&mut page, &gap(from, to, to - from + 1));
            write_all(socket, &page).await?;
            break;
        }
        for record in records {
            match record {
                Record::Event { seq, json, .. } => {
                    if seq > replay.upto {
                        cursor = replay.upto;
                        break;
                    }
                    if seq > cursor + 1 {
                        let (from, to) = (cursor + 1, seq - 1);
                        push_frame(&mut page, &gap(from, to, to - from + 1));
                    }
                    cursor = seq;
                    if Event::from_json(&json).is_some_and(|e| replay.subs.matches(&e.body)) {
                        push_frame(&mut page, &json);
                    }
                }
                Record::Gap {
                    from,
                    to,
                    handed_out_max,
                } => {
                    let to = to.min(replay.upto);
                    if to > cursor {
                        let from = from.max(cursor + 1);
                        push_frame(&mut page, &gap(from, to, handed_out_max));
                        cursor = to;
                    }
                }
            }
            if cursor >= replay.upto {
                break;
            }
        }
        write_all(socket, &page).await?;
    }
    Ok(())
}

/// One page of journal records after `after`; empty when the journal is
/// gone or failed.
async fn read_page(journal: &Sender<JournalMsg>, after: u64) -> Vec<Record> {
    let (reply, records) = bounded(1);
    let asked = journal.send(JournalMsg::Read {
        after,
        limit: REPLAY_PAGE,
        reply,
    });
    if asked.await.is_err() {
        return Vec::new();
    }
    records.recv().await.unwrap_or_default()
}

/// A `gap` record: seqs `from..=to` can never be replayed, and at most
/// `handed_out_max` of them were ever handed out.
fn gap(from: u64, to: u64, handed_out_max: u64) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = write_gap(&mut out, from, to, handed_out_max);
    out
}
