//! [`SsfStreamStore`] on SQLite: every write on the writer's thread, so a cap's count and its
//! insert cannot interleave with another's.

use async_trait::async_trait;
use rusqlite::params;

use super::SqliteStore;
use crate::store::StoreError;
use crate::store::ssf::{
    self, Method, SsfStreamStore, Status, StoredStream, from_row, list_text, outbox_stream, sql,
};

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ssf::Row> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
        r.get(11)?,
        r.get(12)?,
    ))
}

/// Every receiver stream a SET may go to, read in the batch's transaction.
pub(super) fn targets(tx: &rusqlite::Connection) -> rusqlite::Result<Vec<ssf::Target>> {
    let mut s = tx.prepare_cached(sql::TARGETS)?;
    let rows = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    Ok(rows
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter_map(ssf::target)
        .collect())
}

#[async_trait]
impl SsfStreamStore for SqliteStore {
    async fn create_ssf_stream(
        &self,
        s: &StoredStream,
        max_per_client: u64,
    ) -> Result<bool, StoreError> {
        let s = s.clone();
        self.writer
            .tx(move |tx| {
                let n: i64 =
                    (tx.prepare_cached(sql::COUNT_OF)?).query_row([&s.client_id], |r| r.get(0))?;
                if n.max(0) as u64 >= max_per_client {
                    return Ok(false);
                }
                (tx.prepare_cached(sql::INSERT)?).execute(params![
                    s.id,
                    s.client_id,
                    s.method.as_str(),
                    s.endpoint_url,
                    s.authorization_header,
                    list_text(&s.events_requested),
                    list_text(&s.events_delivered),
                    s.description,
                    s.status.as_str(),
                    s.status_reason,
                    s.created_at,
                    s.updated_at,
                    s.verified_at,
                ])?;
                Ok(true)
            })
            .await
    }

    async fn ssf_stream(&self, id: &str) -> Result<Option<StoredStream>, StoreError> {
        let found = self.readers.read(|c| {
            let mut s = c.prepare_cached(&sql::one())?;
            let mut rows = s.query_map([id], row)?;
            rows.next().transpose()
        })?;
        found.map(from_row).transpose()
    }

    async fn ssf_streams_of(&self, client_id: &str) -> Result<Vec<StoredStream>, StoreError> {
        let rows = self.readers.read(|c| {
            let mut s = c.prepare_cached(&sql::of_client())?;
            let rows = s.query_map([client_id], row)?;
            rows.collect::<Result<Vec<_>, _>>()
        })?;
        rows.into_iter().map(from_row).collect()
    }

    async fn ssf_stream_owners(&self) -> Result<Vec<String>, StoreError> {
        self.readers.read(|c| {
            let mut s = c.prepare_cached(sql::OWNERS)?;
            let rows = s.query_map([], |r| r.get(0))?;
            rows.collect()
        })
    }

    async fn replace_ssf_stream(&self, s: &StoredStream, was: Method) -> Result<bool, StoreError> {
        let s = s.clone();
        self.writer
            .tx(move |tx| {
                let n = (tx.prepare_cached(sql::REPLACE)?).execute(params![
                    s.method.as_str(),
                    s.endpoint_url,
                    s.authorization_header,
                    list_text(&s.events_requested),
                    list_text(&s.events_delivered),
                    s.description,
                    s.updated_at,
                    s.id,
                    s.client_id,
                ])?;
                if n == 1 && was != s.method {
                    (tx.prepare_cached(sql::MOVE_PENDING)?)
                        .execute(params![s.outbox(), outbox_stream(&s.id, was)])?;
                }
                Ok(n == 1)
            })
            .await
    }

    async fn delete_ssf_stream(&self, id: &str, client_id: &str) -> Result<bool, StoreError> {
        let (id, client_id) = (id.to_string(), client_id.to_string());
        self.writer
            .tx(move |tx| {
                let n = (tx.prepare_cached(sql::DELETE)?).execute(params![id, client_id])?;
                if n == 1 {
                    (tx.prepare_cached(sql::DROP_PENDING)?).execute(params![
                        outbox_stream(&id, Method::Push),
                        outbox_stream(&id, Method::Poll)
                    ])?;
                }
                Ok(n == 1)
            })
            .await
    }

    async fn set_ssf_stream_status(
        &self,
        id: &str,
        client_id: &str,
        status: Status,
        reason: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let (id, client_id) = (id.to_string(), client_id.to_string());
        let reason = reason.map(str::to_string);
        self.writer
            .tx(move |tx| {
                let n = (tx.prepare_cached(sql::STATUS)?).execute(params![
                    status.as_str(),
                    reason,
                    now,
                    id,
                    client_id
                ])?;
                if n == 1 && status == Status::Disabled {
                    (tx.prepare_cached(sql::DROP_PENDING)?).execute(params![
                        outbox_stream(&id, Method::Push),
                        outbox_stream(&id, Method::Poll)
                    ])?;
                }
                Ok(n == 1)
            })
            .await
    }

    async fn verify_ssf_stream(
        &self,
        id: &str,
        client_id: &str,
        now: i64,
        interval: i64,
    ) -> Result<bool, StoreError> {
        let (id, client_id) = (id.to_string(), client_id.to_string());
        self.writer
            .tx(move |tx| {
                let n = (tx.prepare_cached(sql::VERIFY)?).execute(params![
                    now,
                    id,
                    client_id,
                    now - interval
                ])?;
                Ok(n == 1)
            })
            .await
    }
}
