//! A tiny `/metrics` endpoint for programs that are not servers (training): a background thread
//! with its own single-threaded runtime serving whatever text `render` returns.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::http::header;
use axum::routing::get;
use axum::Router;

use crate::error::{Result, ServeError};
use crate::metrics::CONTENT_TYPE;

pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Binds `addr` now (so a bad address fails at once) and serves `GET /metrics` until the
/// process ends. Returns the bound address (port 0 picks a free one).
pub fn spawn_metrics_endpoint(addr: SocketAddr, render: Render) -> Result<SocketAddr> {
    let io = |e| ServeError::Io { path: PathBuf::from(addr.to_string()), source: e };
    let std_listener = std::net::TcpListener::bind(addr).map_err(io)?;
    std_listener.set_nonblocking(true).map_err(io)?;
    let bound = std_listener.local_addr().map_err(io)?;
    std::thread::Builder::new()
        .name("deepfeed-metrics".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime for /metrics");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
                let app = Router::new().route(
                    "/metrics",
                    get(move || {
                        let r = render.clone();
                        async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], r()) }
                    }),
                );
                let _ = axum::serve(listener, app).await;
            })
        })
        .map_err(io)?;
    Ok(bound)
}
