//! Storage for the human-facing flows (authorization codes, consents, browser sessions), as a
//! supertrait of [`super::Store`] so `dyn Store` carries it. Same SQL for both backends through
//! the `web_sql_store!` macro, invoked in `sqlite.rs` and `postgres.rs`.

use async_trait::async_trait;

#[async_trait]
pub trait WebStore: Send + Sync + 'static {}

/// Implements [`WebStore`] for a struct with a `pool: sqlx::Pool<$db>` field.
macro_rules! web_sql_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::web::WebStore for $store {}
    };
}

pub(super) use web_sql_store;
