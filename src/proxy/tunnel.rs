//! The tunnel: after a 101, the client's and the origin's upgraded connections spliced together.

use std::sync::Arc;

use http::header::HeaderValue;
use hyper_util::rt::TokioIo;

use super::server;
use crate::metrics::Metrics;

/// After a 101, splice the client's and the origin's upgraded connections together until either side closes,
/// the tunnel idles for `client_idle`, or the server's grace period ends.
pub(super) fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    origin: hyper::upgrade::OnUpgrade,
    request_id: HeaderValue,
    lifecycle: server::Lifecycle,
    metrics: Arc<Metrics>,
) {
    tokio::spawn(async move {
        let _drain = lifecycle.drain;
        let mut phase = lifecycle.phase;
        let (client, origin) = match tokio::try_join!(client, origin) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(request_id = request_id.to_str().unwrap_or("-"), error = %e, "upgrade failed");
                return;
            }
        };
        let _open = metrics.tunnel_opened();
        let activity = Arc::new(server::Activity::new());
        let mut client = server::Tracked::new(TokioIo::new(client), activity.clone());
        let mut origin = TokioIo::new(origin);
        tokio::select! {
            r = tokio::io::copy_bidirectional(&mut client, &mut origin) => {
                if let Err(e) = r {
                    tracing::debug!(request_id = request_id.to_str().unwrap_or("-"), error = %e, "upgraded connection ended");
                }
            }
            _ = activity.idle_for(lifecycle.idle) => {
                tracing::debug!(request_id = request_id.to_str().unwrap_or("-"), "upgraded connection idle; closed");
            }
            _ = phase.wait_for(|p| *p == server::Phase::Closing) => {}
        }
    });
}
