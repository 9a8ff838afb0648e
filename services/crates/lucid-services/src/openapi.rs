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

/// What the handlers' annotations leave out and every operation shares: the shape of the
/// ids in its path, and the answers the layers around it give (400 for a malformed id or
/// body, 401 without a valid token, 408/413 for a body too slow or too large, 429 over a
/// user's own share).
pub(crate) struct Common {
    /// The gateway and the recorder hold users to their shares (429); storage and the auth
    /// service know no such shares.
    per_user: bool,
}

const PER_USER: Common = Common { per_user: true };
pub(crate) const NO_USERS: Common = Common { per_user: false };

const SESSION_ID_PATTERN: &str = "^[0-9a-f]{32}$";
const ADDRESS_PATTERN: &str = "^[0-9a-f]{64}$";

impl Modify for Common {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        let error = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build(),
            )
        };
        let common = [
            ("400", "malformed id, address or body"),
            (
                "401",
                "no valid bearer token (the scheme is case-insensitive)",
            ),
            ("408", "the body came too slowly (HTTP_BODY_* settings)"),
            ("413", "the body is larger than the route accepts"),
            (
                "429",
                "this user holds its share of a limit already; retry shortly",
            ),
        ];
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                for p in op.parameters.iter_mut().flatten() {
                    let pattern = match p.name.as_str() {
                        "id" => SESSION_ID_PATTERN,
                        "address" => ADDRESS_PATTERN,
                        _ => continue,
                    };
                    p.schema = Some(RefOr::T(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .pattern(Some(pattern))
                            .into(),
                    ));
                }
                // An operation marked `security(())` needs no token (a login, the JWKS):
                // nothing there answers 401 for a missing one.
                let public = op
                    .security
                    .as_ref()
                    .is_some_and(|s| s.contains(&Default::default()));
                for (code, description) in common {
                    if (code == "429" && !self.per_user) || (code == "401" && public) {
                        continue;
                    }
                    op.responses
                        .responses
                        .entry(code.to_string())
                        .or_insert_with(|| error(description));
                }
            }
        }
    }
}

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
    modifiers(&Bearer, &PER_USER),
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
    modifiers(&Bearer, &PER_USER),
    security(("bearer" = []))
)]
pub struct RecorderApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "session-storage", description = "Content-addressed chunks. Bearer: a service token from session-recorder or api-gateway."),
    paths(crate::storage::put_chunk, crate::storage::get_chunk),
    components(schemas(ErrorBody, StoredChunk)),
    modifiers(&Bearer, &NO_USERS),
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
