//! The event batch splitter the ingestion endpoint runs on every body: arbitrary JSON (or
//! not) is split into events, each read or refused on its own, and never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(batch) = candor_domain::event::split_batch(text) {
        if batch.single {
            assert_eq!(batch.events.len(), 1);
        }
        for event in batch.events.into_iter().flatten() {
            let _ = candor_domain::SubjectId::parse(&event.subject);
            let _ = candor_domain::ItemId::parse(&event.item);
            if let Some(t) = &event.timestamp {
                let _ = candor_domain::Timestamp::parse_rfc3339(t);
            }
        }
    }
});
