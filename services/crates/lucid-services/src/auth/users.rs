//! Users in MongoDB (`users`): one document per user, keyed by the canonical username, so
//! two spellings of one name can never both exist (the `_id` is unique on every server).
//! The user's id (`user_id`, the tokens' `sub`) is random and never reused: a user removed
//! and created again under the same name does not inherit the old one's sessions.

use mongodb::bson::{Document, doc};
use serde::{Deserialize, Serialize};

use crate::error::ServiceError;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct User {
    /// The canonical username (see `username::canonical`).
    #[serde(rename = "_id")]
    pub canonical: String,
    pub user_id: String,
    /// As typed at creation (display only).
    pub username: String,
    pub password_hash: String,
    #[serde(default, deserialize_with = "flag")]
    pub admin: bool,
    #[serde(default, deserialize_with = "flag")]
    pub disabled: bool,
    /// Logins (refresh-token families) started before this time, seconds, are refused: a
    /// password reset or a disable ends every session the user had.
    #[serde(default)]
    pub sessions_valid_after: u64,
    pub created_at: u64,
}

/// A stored flag: a boolean, or (as nx-27017 stores a `$set` boolean) 0 or 1.
fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Int(i64),
    }
    Ok(match Flag::deserialize(d)? {
        Flag::Bool(b) => b,
        Flag::Int(i) => i != 0,
    })
}

/// What an API answer shows of a user: never the hash.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserView {
    pub user_id: String,
    pub username: String,
    pub admin: bool,
    pub disabled: bool,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        Self {
            user_id: u.user_id.clone(),
            username: u.username.clone(),
            admin: u.admin,
            disabled: u.disabled,
        }
    }
}

#[derive(Clone)]
pub struct Users {
    collection: mongodb::Collection<Document>,
    errors: prometheus_client::metrics::counter::Counter,
}

pub fn new_user_id() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Users {
    pub fn new(
        db: &mongodb::Database,
        errors: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        Self {
            collection: db.collection("users"),
            errors,
        }
    }

    fn failed(&self) -> impl Fn(mongodb::error::Error) -> ServiceError + '_ {
        move |e| {
            self.errors.inc();
            ServiceError::Unavailable(format!("mongodb: {e}"))
        }
    }

    fn decode(&self, d: Document) -> Result<User, ServiceError> {
        mongodb::bson::from_document(d)
            .map_err(|e| ServiceError::Internal(format!("a stored user is unreadable: {e}")))
    }

    pub async fn by_name(&self, canonical: &str) -> Result<Option<User>, ServiceError> {
        let found = self
            .collection
            .find_one(doc! {"_id": canonical})
            .await
            .map_err(self.failed())?;
        found.map(|d| self.decode(d)).transpose()
    }

    pub async fn by_id(&self, user_id: &str) -> Result<Option<User>, ServiceError> {
        let found = self
            .collection
            .find_one(doc! {"user_id": user_id})
            .await
            .map_err(self.failed())?;
        found.map(|d| self.decode(d)).transpose()
    }

    /// Inserts `user`; Ok(false) when the name is taken.
    pub async fn create(&self, user: &User) -> Result<bool, ServiceError> {
        let d =
            mongodb::bson::to_document(user).map_err(|e| ServiceError::Internal(e.to_string()))?;
        match self.collection.insert_one(d).await {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(self.failed()(e)),
        }
    }

    pub async fn any_admin(&self) -> Result<bool, ServiceError> {
        let found = self
            .collection
            .find_one(doc! {"admin": true})
            .await
            .map_err(self.failed())?;
        Ok(found.is_some())
    }

    /// Applies `set` to the user; Ok(false) when there is no such user.
    pub async fn update(&self, user_id: &str, set: Document) -> Result<bool, ServiceError> {
        let r = self
            .collection
            .update_one(doc! {"user_id": user_id}, doc! {"$set": set})
            .await
            .map_err(self.failed())?;
        Ok(r.matched_count > 0)
    }

    pub async fn list(&self) -> Result<Vec<UserView>, ServiceError> {
        use futures::TryStreamExt;
        let docs: Vec<Document> = self
            .collection
            .find(doc! {})
            .await
            .map_err(self.failed())?
            .try_collect()
            .await
            .map_err(self.failed())?;
        docs.into_iter()
            .map(|d| self.decode(d).map(|u| UserView::from(&u)))
            .collect()
    }
}

/// E11000: the `_id` (the canonical name) is taken.
fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    e.to_string().contains("E11000")
        || matches!(
            e.kind.as_ref(),
            mongodb::error::ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) if w.code == 11000
        )
}
