//! Binding and serving the admin API.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::{dashboard, metrics, Admin, Command, DeployRequest, Shared};

/// The largest component a deploy accepts.
const MAX_COMPONENT_BYTES: usize = 256 * 1024 * 1024;

/// Where the admin API listens, and who may use it.
#[derive(Clone, Debug)]
pub struct AdminOptions {
    /// The address, e.g. `127.0.0.1:9464`.
    pub bind: SocketAddr,
    /// Whether `bind` was asked for explicitly. The default port falls back to a free one
    /// when taken (several hosts on one machine); an explicit one must be had.
    pub explicit: bool,
    /// The token required by everything but the probes and the dashboard's static page:
    /// as `Authorization: Bearer TOKEN`, or as `?token=TOKEN` (which is how the page, opened
    /// with it, passes it on to its event stream).
    pub token: Option<String>,
}

/// The default address.
pub const DEFAULT_BIND: &str = "127.0.0.1:9464";

struct App {
    shared: Arc<Shared>,
    token: Option<String>,
}

/// Binds and starts serving on a thread of its own.
pub fn start(options: &AdminOptions) -> Result<Admin> {
    if !options.bind.ip().is_loopback() && options.token.as_deref().is_none_or(str::is_empty) {
        bail!(
            "--admin {}: the admin API may pause the pipeline; bound beyond loopback it needs --admin-token \
             (or WEIR_ADMIN_TOKEN)",
            options.bind
        );
    }
    let listener = match TcpListener::bind(options.bind) {
        Ok(listener) => listener,
        Err(e) if !options.explicit && e.kind() == std::io::ErrorKind::AddrInUse => {
            let any = SocketAddr::new(options.bind.ip(), 0);
            TcpListener::bind(any).with_context(|| format!("binding the admin API to {any}"))?
        }
        Err(e) => return Err(e).with_context(|| format!("--admin {}: binding the admin API", options.bind)),
    };
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared::default());
    let app = Arc::new(App { shared: shared.clone(), token: options.token.clone() });
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name("weir-admin".into()).spawn(move || {
        runtime.block_on(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => listener,
                Err(e) => return tracing::error!(error = %e, "admin API listener"),
            };
            if let Err(e) = axum::serve(listener, router(app)).await {
                tracing::error!(error = %e, "admin API stopped");
            }
        })
    })?;
    Ok(Admin { addr, shared })
}

fn router(app: Arc<App>) -> Router {
    let guarded = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/api/status", get(status))
        .route("/api/results", get(results))
        .route("/api/events", get(events))
        .route("/api/pipeline/pause", post(pause))
        .route("/api/pipeline/resume", post(resume))
        .route("/api/plugins", get(plugins))
        .route("/api/plugins/deploy", post(deploy).layer(DefaultBodyLimit::max(MAX_COMPONENT_BYTES)))
        .route("/api/plugins/rollback", post(rollback))
        .route("/api/plugins/shadow", post(shadow).layer(DefaultBodyLimit::max(MAX_COMPONENT_BYTES)))
        .route("/api/plugins/diff", get(diff))
        .route("/api/plugins/promote", post(promote))
        .route("/api/plugins/discard", post(discard))
        .merge(crate::schemas::routes(app.shared.registry.clone()))
        .merge(super::ingest::routes(app.shared.ingest.clone()))
        .layer(middleware::from_fn_with_state(app.clone(), authorize));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/", get(dashboard::index))
        .route("/assets/{file}", get(dashboard::asset))
        .merge(guarded)
        .with_state(app)
}

async fn authorize(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    if let Some(token) = &app.token {
        let header = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let bearer = header.and_then(|v| v.strip_prefix("Bearer "));
        let query = Query::<std::collections::HashMap<String, String>>::try_from_uri(request.uri()).ok();
        let given = bearer.map(str::to_string).or_else(|| query.and_then(|Query(mut q)| q.remove("token")));
        if given.as_deref() != Some(token.as_str()) {
            return (
                StatusCode::UNAUTHORIZED,
                "a token is required: Authorization: Bearer <token>, or ?token=<token> (for the dashboard)\n",
            )
                .into_response();
        }
    }
    next.run(request).await
}

async fn ready(State(app): State<Arc<App>>) -> Response {
    match app.shared.not_ready() {
        None => "ready\n".into_response(),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response(),
    }
}

async fn metrics_text(State(app): State<Arc<App>>) -> Response {
    let body = metrics::render(&app.shared.status(), crate::pipeline::now_ms());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

async fn status(State(app): State<Arc<App>>) -> Json<super::Status> {
    Json(app.shared.status())
}

async fn results(State(app): State<Arc<App>>) -> Json<super::Board> {
    Json(app.shared.board())
}

async fn events(State(app): State<Arc<App>>) -> Response {
    dashboard::events(app.shared.clone()).into_response()
}

async fn pause(State(app): State<Arc<App>>) -> (StatusCode, &'static str) {
    app.shared.command(Command::Pause);
    (StatusCode::ACCEPTED, "pausing: the pipeline checkpoints and stops reading\n")
}

async fn resume(State(app): State<Arc<App>>) -> (StatusCode, &'static str) {
    app.shared.command(Command::Resume);
    (StatusCode::ACCEPTED, "resuming: the pipeline reads again (an open circuit breaker closes)\n")
}

/// The query of `POST /api/plugins/deploy`, `/shadow`, `/rollback`, `/promote` and `/discard`.
#[derive(serde::Deserialize)]
struct PluginQuery {
    #[serde(default)]
    stage: String,
    pipeline: Option<String>,
    name: Option<String>,
    max_error_increase: Option<f64>,
}

fn no_pipeline() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "this host has no pipeline running yet\n").into_response()
}

/// Runs a blocking plugin call off the server's thread; a refusal is a 422 with the reason.
async fn blocking(call: impl FnOnce() -> anyhow::Result<serde_json::Value> + Send + 'static) -> Response {
    match tokio::task::spawn_blocking(call).await {
        Ok(Ok(report)) => Json(report).into_response(),
        Ok(Err(e)) => (StatusCode::UNPROCESSABLE_ENTITY, format!("{e:#}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn plugins(State(app): State<Arc<App>>) -> Response {
    match app.shared.plugins() {
        Some(control) => Json(control.list()).into_response(),
        None => no_pipeline(),
    }
}

async fn deploy(State(app): State<Arc<App>>, Query(query): Query<PluginQuery>, body: Bytes) -> Response {
    let Some(control) = app.shared.plugins() else { return no_pipeline() };
    let request = request(query, body);
    blocking(move || control.deploy(request)).await
}

fn request(query: PluginQuery, body: Bytes) -> DeployRequest {
    DeployRequest {
        pipeline: query.pipeline,
        stage: query.stage,
        name: query.name,
        max_error_increase: query.max_error_increase,
        bytes: body.to_vec(),
    }
}

async fn shadow(State(app): State<Arc<App>>, Query(query): Query<PluginQuery>, body: Bytes) -> Response {
    let Some(control) = app.shared.plugins() else { return no_pipeline() };
    let request = request(query, body);
    blocking(move || control.shadow(request)).await
}

async fn promote(State(app): State<Arc<App>>, Query(query): Query<PluginQuery>) -> Response {
    let Some(control) = app.shared.plugins() else { return no_pipeline() };
    blocking(move || control.promote(query.pipeline.as_deref())).await
}

async fn discard(State(app): State<Arc<App>>, Query(query): Query<PluginQuery>) -> Response {
    let Some(control) = app.shared.plugins() else { return no_pipeline() };
    blocking(move || control.discard(query.pipeline.as_deref())).await
}

/// The query of `GET /api/plugins/diff`.
#[derive(serde::Deserialize)]
struct DiffQuery {
    pipeline: Option<String>,
    limit: Option<usize>,
}

async fn diff(State(app): State<Arc<App>>, Query(query): Query<DiffQuery>) -> Response {
    let runs = app.shared.status().pipeline;
    if let Some(other) = query.pipeline.filter(|p| *p != runs) {
        let why = format!("this host runs pipeline {runs:?}, not {other:?}\n");
        return (StatusCode::UNPROCESSABLE_ENTITY, why).into_response();
    }
    match app.shared.diff(query.limit.unwrap_or(100)) {
        Some(report) => Json(report).into_response(),
        None => (StatusCode::NOT_FOUND, "no shadow is running (or none has committed yet)\n").into_response(),
    }
}

async fn rollback(State(app): State<Arc<App>>, Query(query): Query<PluginQuery>) -> Response {
    let Some(control) = app.shared.plugins() else { return no_pipeline() };
    blocking(move || control.rollback(query.pipeline.as_deref(), &query.stage)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(bind: &str, token: Option<&str>) -> AdminOptions {
        AdminOptions { bind: bind.parse().unwrap(), explicit: true, token: token.map(String::from) }
    }

    #[test]
    fn beyond_loopback_a_token_is_required_and_checked() {
        let err = start(&options("0.0.0.0:0", None)).err().unwrap().to_string();
        assert!(err.contains("needs --admin-token"), "{err}");

        let admin = start(&options("127.0.0.1:0", Some("s3cret"))).unwrap();
        let url = |path: &str| format!("http://{}{path}", admin.addr);
        // Probes need no token; everything else does.
        assert_eq!(ureq::get(&url("/healthz")).call().unwrap().status(), 200);
        let refused = ureq::post(&url("/api/pipeline/pause")).send_empty().err().unwrap();
        assert!(matches!(refused, ureq::Error::StatusCode(401)), "{refused}");
        assert_eq!(admin.shared.take_command(), None);
        let accepted =
            ureq::post(&url("/api/pipeline/pause")).header("Authorization", "Bearer s3cret").send_empty().unwrap();
        assert_eq!(accepted.status(), 202);
        assert_eq!(admin.shared.take_command(), Some(Command::Pause));
        // The dashboard's page is served to anyone; its data only with the token, which
        // the page's event stream passes in the query.
        assert_eq!(ureq::get(&url("/")).call().unwrap().status(), 200);
        let refused = ureq::get(&url("/api/results?token=wrong")).call().err().unwrap();
        assert!(matches!(refused, ureq::Error::StatusCode(401)), "{refused}");
        assert_eq!(ureq::get(&url("/api/results?token=s3cret")).call().unwrap().status(), 200);
    }

    #[test]
    fn the_dashboard_assets_are_served_from_the_binary() {
        let admin = start(&options("127.0.0.1:0", None)).unwrap();
        let get = |path: &str| ureq::get(&format!("http://{}{path}", admin.addr)).call();
        let page = get("/").unwrap().into_body().read_to_string().unwrap();
        for asset in ["assets/app.js", "assets/style.css", "assets/uPlot.iife.min.js", "assets/uPlot.min.css"] {
            assert!(page.contains(asset), "the page loads {asset}");
            let mut response = get(&format!("/{asset}")).unwrap();
            assert!(response.body_mut().read_to_string().unwrap().len() > 1000, "{asset}");
        }
        assert!(matches!(get("/assets/nope.js").err().unwrap(), ureq::Error::StatusCode(404)));
    }

    #[test]
    fn the_default_port_falls_back_when_taken_and_an_explicit_one_does_not() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = start(&AdminOptions { bind: addr, explicit: true, token: None }).err().unwrap();
        assert!(format!("{err:#}").contains(&addr.to_string()), "{err:#}");
        let fallback = start(&AdminOptions { bind: addr, explicit: false, token: None }).unwrap();
        assert_ne!(fallback.addr, addr);
    }
}
