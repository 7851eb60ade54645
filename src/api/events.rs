//! `GET /events`: the event bus as Docker's stream of JSON messages, with `since` (replay from
//! the kept window), `until` (stop at that time) and `filters`.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use super::http::{ApiError, ApiRequest, ApiResult};
use super::render;
use crate::daemon::engine::Engine;
use crate::daemon::events::{parse_time, EventFilter};
use crate::timefmt;

/// How often an idle stream checks that its client is still there.
const IDLE_CHECK: Duration = Duration::from_secs(1);

pub fn serve(engine: &Arc<Engine>, req: &mut ApiRequest) -> ApiResult<()> {
    let now = timefmt::now_nanos();
    let time_param = |key: &str| -> ApiResult<Option<i128>> {
        match req.q(key).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => parse_time(s, now)
                .map(Some)
                .ok_or_else(|| ApiError::bad_request(format!("invalid value for {key}: {s:?}"))),
        }
    };
    let since = time_param("since")?;
    let until = time_param("until")?;
    let filters = render::parse_filters(req.q("filters")).map_err(ApiError::bad_request)?;
    let filter = EventFilter::new(filters).map_err(ApiError::bad_request)?;
    let bus = &engine.events;
    // Subscribe before replaying, so nothing emitted in between is lost or sent twice.
    let mut next = bus.next_seq();
    let mut w = req.stream("application/json")?;
    let send = |w: &mut super::http::ChunkedWriter, e: &crate::daemon::events::Event| {
        w.write_all(format!("{}\n", e.to_json()).as_bytes())
    };
    if let Some(since) = since {
        for e in bus.recent() {
            if e.seq >= next {
                break;
            }
            let in_window = e.time_nano >= since && until.is_none_or(|u| e.time_nano <= u);
            if in_window && filter.matches(&e) && send(&mut w, &e).is_err() {
                return Ok(());
            }
        }
    }
    loop {
        let now = timefmt::now_nanos();
        let wait = match until {
            Some(u) if u <= now => return Ok(()),
            Some(u) => IDLE_CHECK.min(Duration::from_nanos((u - now) as u64)),
            None => IDLE_CHECK,
        };
        let events = bus.wait_from(next, wait);
        if events.is_empty() && w.peer_closed() {
            return Ok(());
        }
        for e in events {
            next = e.seq + 1;
            if until.is_some_and(|u| e.time_nano > u) {
                return Ok(());
            }
            if filter.matches(&e) && send(&mut w, &e).is_err() {
                return Ok(());
            }
        }
    }
}
