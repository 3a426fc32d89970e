//! The live dashboard: a page and its assets compiled into the binary (uPlot, vendored
//! from the npm registry, draws the charts), and the server-sent event stream that feeds
//! it. Each event carries the status; the results board rides along when a commit has
//! landed since the last event, so an idle host sends little.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use futures_util::Stream;

use super::Shared;

/// How often the page hears from the host.
const TICK: Duration = Duration::from_millis(500);

const ASSETS: [(&str, &str, &str); 5] = [
    ("app.js", "text/javascript; charset=utf-8", include_str!("dashboard/app.js")),
    ("style.css", "text/css; charset=utf-8", include_str!("dashboard/style.css")),
    ("uPlot.iife.min.js", "text/javascript; charset=utf-8", include_str!("dashboard/uPlot.iife.min.js")),
    ("uPlot.min.css", "text/css; charset=utf-8", include_str!("dashboard/uPlot.min.css")),
    ("uPlot.LICENSE", "text/plain; charset=utf-8", include_str!("dashboard/uPlot.LICENSE")),
];

pub(super) async fn index() -> Html<&'static str> {
    Html(include_str!("dashboard/index.html"))
}

pub(super) async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, ..)| *name == file) {
        Some((_, mime, body)) => ([(header::CONTENT_TYPE, *mime)], *body).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no asset {file:?}\n")).into_response(),
    }
}

/// One event: the status, and the results when they changed since `seen` commits.
fn update(shared: &Shared, seen: &mut Option<u64>) -> Event {
    let results = (*seen != Some(shared.commits())).then(|| shared.board());
    if let Some(board) = &results {
        *seen = Some(board.commits);
    }
    let data = serde_json::json!({
        "now_ms": crate::pipeline::now_ms(),
        "status": shared.status(),
        "results": results,
    });
    Event::default().data(data.to_string())
}

pub(super) fn events(shared: Arc<Shared>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = futures_util::stream::unfold((shared, None, true), |(shared, mut seen, first)| async move {
        if !first {
            tokio::time::sleep(TICK).await;
        }
        let event = update(&shared, &mut seen);
        Some((Ok(event), (shared, seen, false)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
