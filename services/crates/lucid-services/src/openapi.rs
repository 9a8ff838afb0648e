//! Each service's OpenAPI document at `/openapi.json`, generated (utoipa) from the
//! handlers' annotations and the types they answer with.

use axum::Router;
use axum::routing::get;
use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::recorder::ChunkRef;

/// Every error answer. 5xx carry a generic message; the request id finds the detail in
/// the service's logs.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    pub request_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SessionOpened {
    /// 32 lower-case hex characters.
    pub session_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct Uploaded {
    pub session_id: String,
    /// Chunks this upload added.
    pub chunks: usize,
    /// Raw bytes received.
    pub bytes: usize,
}

#[derive(Serialize, ToSchema)]
pub struct Manifest {
    pub session_id: String,
    /// blake3 Merkle root over the chunk addresses, hex.
    pub merkle_root: String,
    pub chunks: Vec<ChunkRef>,
}

#[derive(Serialize, ToSchema)]
pub struct StoredChunk {
    pub address: String,
    pub size: usize,
    pub deduplicated: bool,
}

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "api-gateway", description = "Client API of the session pipeline. Bearer: HS256 JWT, aud api-gateway, iss lucid-auth-service, at most one hour long; sub is the user who owns the sessions."),
    paths(
        crate::gateway::open_session,
        crate::gateway::upload,
        crate::gateway::finalize,
        crate::gateway::manifest,
        crate::gateway::chunk,
    ),
    components(schemas(ErrorBody, SessionOpened, Uploaded, Manifest, ChunkRef)),
    modifiers(&Bearer),
    security(("bearer" = []))
)]
pub struct GatewayApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "session-recorder", description = "Sessions for the gateway. Bearer: a service token from api-gateway carrying the user it acts for."),
    paths(
        crate::recorder::open_session,
        crate::recorder::upload,
        crate::recorder::finalize,
        crate::recorder::manifest,
        crate::recorder::chunk_access,
    ),
    components(schemas(ErrorBody, SessionOpened, Uploaded, Manifest, ChunkRef)),
    modifiers(&Bearer),
    security(("bearer" = []))
)]
pub struct RecorderApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "session-storage", description = "Content-addressed chunks. Bearer: a service token from session-recorder or api-gateway."),
    paths(crate::storage::put_chunk, crate::storage::get_chunk),
    components(schemas(ErrorBody, StoredChunk)),
    modifiers(&Bearer),
    security(("bearer" = []))
)]
pub struct StorageApi;

/// `GET /openapi.json` serving `doc` (unauthenticated: it describes, it grants nothing).
pub fn route(doc: utoipa::openapi::OpenApi) -> Router {
    let json = std::sync::Arc::new(doc);
    Router::new().route(
        "/openapi.json",
        get(move || {
            let json = json.clone();
            async move { axum::Json(json.as_ref().clone()) }
        }),
    )
}
