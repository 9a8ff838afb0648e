//! The pipeline's business metrics, registered beside lucid-kit's HTTP ones.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub chunks_stored: Counter,
    pub chunks_deduplicated: Counter,
    pub chunks_repaired: Counter,
    /// Refused: bad address, hash mismatch, or (gateway) a relayed chunk failing its hash.
    pub chunks_rejected: Counter,
    pub bytes_stored: Counter,
    /// Raw bytes accepted in uploads (recorder) or relayed (gateway).
    pub bytes_received: Counter,
    pub peer_retries: Counter,
    pub redis_errors: Counter,
    pub mongo_errors: Counter,
    /// Requests refused because a memory or upload budget was spent.
    pub shed: Counter,
    /// Uploads holding one of the recorder's upload slots.
    pub uploads_in_flight: Gauge,
}

impl Metrics {
    pub fn register(&self, app: lucid_kit::App) -> lucid_kit::App {
        [
            (
                "chunks_stored",
                "Chunks written to disk",
                &self.chunks_stored,
            ),
            (
                "chunks_deduplicated",
                "Chunks already stored and verified",
                &self.chunks_deduplicated,
            ),
            (
                "chunks_repaired",
                "Chunk files that failed their hash, replaced by an upload",
                &self.chunks_repaired,
            ),
            (
                "chunks_rejected",
                "Chunks refused for a bad address or hash",
                &self.chunks_rejected,
            ),
            (
                "stored_bytes",
                "Bytes of chunks written",
                &self.bytes_stored,
            ),
            (
                "received_bytes",
                "Bytes of session data received",
                &self.bytes_received,
            ),
            (
                "peer_retries",
                "Retried calls to peer services",
                &self.peer_retries,
            ),
            ("redis_errors", "Failed Redis commands", &self.redis_errors),
            (
                "mongodb_errors",
                "Failed MongoDB operations",
                &self.mongo_errors,
            ),
            (
                "budget_shed",
                "Requests refused with 503 because a memory or upload budget was spent",
                &self.shed,
            ),
        ]
        .into_iter()
        .fold(app, |app, (name, help, counter)| {
            app.register(name, help, counter.clone())
        })
        .register(
            "uploads_in_flight",
            "Uploads holding an upload slot (session-recorder)",
            self.uploads_in_flight.clone(),
        )
    }
}
